//! A node config written as TOML for a `fixit node` child process. The config is
//! tables of scalars (and tables of those), so it is written from its JSON form
//! here; the text is parsed back and compared before it is used.

use anyhow::Context;
use fixit_actors::config::NodeConfig;
use serde_json::Value;
use std::fmt::Write;
use std::path::Path;

/// `config` as TOML text that `NodeConfig::parse` reads back to the same config.
pub(crate) fn node_config_toml(config: &NodeConfig) -> anyhow::Result<String> {
    let value = serde_json::to_value(config).context("node config as JSON")?;
    let Value::Object(sections) = value else {
        anyhow::bail!("a node config is a table");
    };
    let mut text = String::new();
    for (name, section) in &sections {
        write_table(&mut text, &key(name), section)?;
    }
    let parsed = NodeConfig::parse(&text, Path::new("generated.toml"))
        .context("the generated node config does not parse back")?;
    anyhow::ensure!(
        parsed == *config,
        "the generated node config reads back differently"
    );
    Ok(text)
}

/// `[path]` with its scalar fields, then its sub-tables.
fn write_table(text: &mut String, path: &str, table: &Value) -> anyhow::Result<()> {
    let Value::Object(fields) = table else {
        match table {
            Value::Null => return Ok(()),
            _ => anyhow::bail!("top-level field {path} is not a table"),
        }
    };
    let _ = writeln!(text, "[{path}]");
    for (name, value) in fields {
        if !matches!(value, Value::Object(_) | Value::Null) {
            let _ = writeln!(text, "{} = {}", key(name), scalar(value)?);
        }
    }
    let _ = writeln!(text);
    for (name, value) in fields {
        if let Value::Object(_) = value {
            write_table(text, &format!("{path}.{}", key(name)), value)?;
        }
    }
    Ok(())
}

/// A bare key when it may be one, else a quoted key.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_owned()
    } else {
        Value::String(name.to_owned()).to_string()
    }
}

/// A TOML value: JSON's string escapes and number forms are TOML's too.
fn scalar(value: &Value) -> anyhow::Result<String> {
    match value {
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(value.to_string()),
        Value::Array(items) => {
            let items: anyhow::Result<Vec<String>> = items.iter().map(scalar).collect();
            Ok(format!("[{}]", items?.join(", ")))
        }
        Value::Null | Value::Object(_) => anyhow::bail!("not a TOML scalar: {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_single_node_config_reads_back() {
        let config = NodeConfig::single_node(Path::new("/tmp/a dir/with \"quotes\""));
        let text = node_config_toml(&config).expect("writes");
        assert!(text.contains("[rate_limits]"), "{text}");
    }

    #[test]
    fn a_cluster_config_reads_back() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/cluster-3/a.toml");
        let config = NodeConfig::load(&path).expect("the example loads");
        let text = node_config_toml(&config).expect("writes");
        assert!(text.contains("[cluster.regions]"), "{text}");
        let regions: &BTreeMap<String, String> =
            &config.cluster.as_ref().expect("a cluster").regions;
        assert!(!regions.is_empty());
    }
}
