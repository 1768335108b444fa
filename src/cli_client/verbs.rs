//! The verbs of `fixit client`: one per command of the command table
//! (`fixit_protocol::commands`), with one `--flag` per field, plus `watch`. The id
//! that names the owner (the wallet, provider or customer of the token) defaults
//! to the token's own subject.

use crate::api::Request;
use crate::auth::Principal;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches, Subcommand};
use fixit_protocol::command_spec::{Access, CommandSpec, Field, FieldType};
use fixit_protocol::commands::{command_of_verb, COMMANDS};
use fixit_protocol::ids::WalletId;
use serde_json::{Map, Value};

/// The verb that prints the token's pushes instead of sending a command.
const WATCH: &str = "watch";

/// One verb as typed: a command with its arguments, or `watch`.
#[derive(Clone, Debug)]
pub enum Verb {
    /// A command of the table and its parsed arguments.
    Command {
        /// The command.
        spec: &'static CommandSpec,
        /// Its arguments as typed.
        args: ArgMatches,
    },
    /// Print the token's pushes (job events or offers), one JSON line each.
    Watch {
        /// Stop after this many pushes (default: until the stream ends or Ctrl-C).
        count: Option<u64>,
    },
}

impl Verb {
    /// The verb of `words` as typed after `fixit client` (e.g. `["balance",
    /// "--wallet", "7"]`), for callers that build verbs in code.
    pub fn parse(words: &[&str]) -> Result<Verb, clap::Error> {
        let command = Verb::augment_subcommands(Command::new("client").subcommand_required(true));
        let matches =
            command.try_get_matches_from(std::iter::once("client").chain(words.iter().copied()))?;
        Verb::from_arg_matches(&matches)
    }

    /// The request this verb sends, with the owner's id defaulting to `me` (the
    /// token's subject); `None` for `watch`, which subscribes instead.
    pub fn request(&self, me: Principal) -> anyhow::Result<Option<Request>> {
        let Verb::Command { spec, args } = self else {
            return Ok(None);
        };
        let mut fields = Map::new();
        for field in spec.fields {
            if let Some(value) = value_of(spec, field, args, me)? {
                fields.insert(field.name.to_owned(), value);
            }
        }
        Ok(Some(Request::from_fields(spec, fields)?))
    }
}

/// The flag of a field: its name in kebab case; a list takes the singular,
/// repeated (`--skill a --skill b`).
fn flag(field: &Field) -> String {
    let name = match field.ty {
        FieldType::Skills | FieldType::SkillFilter => field.name.trim_end_matches('s'),
        _ => field.name,
    };
    name.replace('_', "-")
}

/// The field naming the command's owner, which defaults to the token's own
/// (its subject, or for a wallet its wallet).
fn owner_field(spec: &CommandSpec) -> Option<&'static str> {
    match spec.access {
        Access::Owner { field, .. } | Access::WalletOwner { field } => Some(field),
        Access::AnyRole | Access::Admin => None,
    }
}

/// The owner field's value for `me`: its wallet for a wallet (none for an
/// admin, who must say which), else its subject.
fn owner_default(spec: &CommandSpec, me: Principal) -> Option<u64> {
    match spec.access {
        Access::WalletOwner { .. } => WalletId::of(&me).map(|wallet| wallet.0),
        _ => Some(me.sub),
    }
}

fn value_of(
    spec: &CommandSpec,
    field: &Field,
    args: &ArgMatches,
    me: Principal,
) -> anyhow::Result<Option<Value>> {
    let text = |name: &str| args.get_one::<String>(name).cloned();
    if matches!(field.ty, FieldType::Skills | FieldType::SkillFilter) {
        let skills: Vec<String> = args
            .get_many::<String>(field.name)
            .map(|values| values.cloned().collect())
            .unwrap_or_default();
        return Ok(Some(Value::from(skills)));
    }
    let Some(given) = text(field.name) else {
        return Ok(if owner_field(spec) == Some(field.name) {
            owner_default(spec, me).map(Value::from)
        } else {
            field.default.map(Value::from)
        });
    };
    let value = match field.ty {
        // A proof is typed as text and sent as its UTF-8 bytes.
        FieldType::Bytes => Some(Value::from(STANDARD.encode(given.as_bytes()))),
        ty => ty.parse(&given),
    };
    let value = value.ok_or_else(|| {
        anyhow::anyhow!(
            "--{}: expected {}, got {given:?}",
            flag(field),
            field.ty.expected()
        )
    })?;
    Ok(Some(value))
}

/// The clap argument of one field.
fn argument(spec: &CommandSpec, field: &Field) -> Arg {
    let mut help = field.doc.to_owned();
    let defaults_to_me = owner_field(spec) == Some(field.name);
    if defaults_to_me {
        help.push_str(" Default: the token's subject.");
    } else if let Some(default) = field.default {
        help.push_str(&format!(" Default: {default}."));
    }
    let arg = Arg::new(field.name)
        .long(flag(field))
        .value_name(field.name.to_uppercase())
        .help(help)
        .allow_hyphen_values(true);
    match field.ty {
        FieldType::Skills => arg.action(ArgAction::Append).required(true),
        FieldType::SkillFilter => arg.action(ArgAction::Append),
        _ => arg
            .action(ArgAction::Set)
            .required(!defaults_to_me && field.default.is_none()),
    }
}

/// The clap subcommand of one command.
fn subcommand(spec: &'static CommandSpec) -> Command {
    spec.fields.iter().fold(
        Command::new(spec.cli).about(spec.summary),
        |command, field| command.arg(argument(spec, field)),
    )
}

fn watch() -> Command {
    Command::new(WATCH)
        .about("Print the token's pushes (job events or offers), one JSON line each")
        .arg(
            Arg::new("count")
                .long("count")
                .help("Stop after this many pushes (default: until the stream ends or Ctrl-C).")
                .value_parser(clap::value_parser!(u64)),
        )
}

impl FromArgMatches for Verb {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Verb, clap::Error> {
        match matches.subcommand() {
            Some((WATCH, args)) => Ok(Verb::Watch {
                count: args.get_one::<u64>("count").copied(),
            }),
            Some((name, args)) => match command_of_verb(name) {
                Some(spec) => Ok(Verb::Command {
                    spec,
                    args: args.clone(),
                }),
                None => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
            },
            None => Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand)),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Verb::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Subcommand for Verb {
    fn augment_subcommands(command: Command) -> Command {
        COMMANDS
            .iter()
            .fold(command, |command, spec| {
                command.subcommand(subcommand(spec))
            })
            .subcommand(watch())
    }

    fn augment_subcommands_for_update(command: Command) -> Command {
        Verb::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        name == WATCH || command_of_verb(name).is_some()
    }
}
