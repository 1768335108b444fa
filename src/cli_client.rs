//! `fixit client`: one command to a node over QUIC, printed as JSON; or `watch`,
//! which prints the token's pushes. A refused command prints its error body and
//! exits non-zero.

mod verbs;

pub use verbs::Verb;

use crate::api::{ApiError, ErrorBody, Response};
use anyhow::Context;
use fixit_sdk::{Client, ClientError};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Environment variable read for the token when `--token` is not given.
pub const TOKEN_ENV: &str = "FIXIT_TOKEN";

/// Arguments of `fixit client`.
#[derive(Clone, Debug, clap::Args)]
pub struct ClientArgs {
    /// The node's QUIC address.
    #[arg(long, default_value = "127.0.0.1:4433")]
    pub addr: SocketAddr,
    /// The node's certificate (PEM), trusted exactly (`server.tls_cert_file` of the node).
    #[arg(long, default_value = "data/local-1/client-tls-cert.pem")]
    pub cert: PathBuf,
    /// Bearer token (`fixit token issue`); default: the FIXIT_TOKEN environment variable.
    #[arg(long)]
    pub token: Option<String>,
    /// Request id for the node's logs (1 to 64 printable ASCII bytes); default: made by the node.
    #[arg(long)]
    pub request_id: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub verb: Verb,
}

/// A command the node refused; shows as its error body in JSON.
#[derive(Debug, thiserror::Error)]
#[error("{json}")]
pub struct Refused {
    /// The node's error body.
    pub body: ErrorBody,
    json: String,
}

impl Refused {
    fn new(body: ErrorBody) -> Refused {
        let json = serde_json::to_string(&body).unwrap_or_else(|_| body.message.clone());
        Refused { body, json }
    }

    fn from_error(error: &ApiError) -> Refused {
        Refused::new(ErrorBody::new(error, ""))
    }
}

/// Connects, runs the verb, prints the result as JSON on stdout. A refusal (of the
/// hello or the command) is returned as [`Refused`], whose text is the error body.
pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let token = match args.token {
        Some(token) => token,
        None => std::env::var(TOKEN_ENV)
            .with_context(|| format!("no token: pass --token or set {TOKEN_ENV}"))?,
    };
    let client = match Client::connect(args.addr, &args.cert, &token).await {
        Ok(client) => client,
        Err(ClientError::Refused(error)) => return Err(Refused::from_error(&error).into()),
        Err(error) => return Err(error).context("connecting to the node"),
    };
    let me = client.welcome().principal;
    let outcome = match (args.verb.request(me)?, &args.verb) {
        (Some(request), _) => {
            let reply = client.reply(request, args.request_id.as_deref()).await;
            print_reply(reply)
        }
        (None, Verb::Watch { count }) => watch(&client, *count).await,
        (None, _) => Ok(()),
    };
    client.close().await;
    outcome
}

fn print_reply(reply: Result<fixit_protocol::wire::ReplyFrame, ApiError>) -> anyhow::Result<()> {
    let reply = reply.map_err(|error| Refused::from_error(&error))?;
    let response: Response = reply.result.map_err(Refused::new)?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}

/// Prints pushes, one JSON line each, until `count` are printed, the stream ends or
/// Ctrl-C.
async fn watch(client: &Client, count: Option<u64>) -> anyhow::Result<()> {
    let mut pushes = client
        .subscribe()
        .await
        .map_err(|error| Refused::from_error(&error))?;
    let limit = count.unwrap_or(u64::MAX);
    for _ in 0..limit {
        let push = tokio::select! {
            push = pushes.next() => push,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(push) = push else { break };
        println!("{}", serde_json::to_string(&push)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Request;
    use crate::auth::{Principal, Role};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn customer(sub: u64) -> Principal {
        Principal {
            role: Role::Customer,
            sub,
        }
    }

    fn provider(sub: u64) -> Principal {
        Principal {
            role: Role::Provider,
            sub,
        }
    }

    fn admin() -> Principal {
        Principal {
            role: Role::Admin,
            sub: 0,
        }
    }

    fn parse(words: &[&str]) -> ClientArgs {
        Cli::try_parse_from(std::iter::once("client").chain(words.iter().copied()))
            .unwrap()
            .client
    }

    #[test]
    fn verbs_become_requests_with_the_token_subject_as_default_id() {
        let args = parse(&["balance"]);
        assert_eq!(args.addr.to_string(), "127.0.0.1:4433");
        assert_eq!(
            args.verb.request(customer(7)).unwrap(),
            Some(Request::Balance { wallet: 7 })
        );
        let args = parse(&[
            "--token", "t", "book", "--skill", "plumber", "--lat", "-33.9", "--lon", "18.4",
            "--price", "10000", "--key", "k1",
        ]);
        assert_eq!(args.token.as_deref(), Some("t"));
        assert_eq!(
            args.verb.request(customer(3)).unwrap(),
            Some(Request::RequestJob {
                customer: 3,
                key: "k1".into(),
                skill: "plumber".into(),
                lat: -33.9,
                lon: 18.4,
                price: 10_000
            })
        );
        let args = parse(&["online", "--skill", "plumber", "--skill", "electrician"]);
        assert!(matches!(
            args.verb.request(provider(9)).unwrap(),
            Some(Request::ProviderOnline { provider: 9, skills }) if skills.len() == 2
        ));
        assert_eq!(
            parse(&["watch", "--count", "2"])
                .verb
                .request(customer(1))
                .unwrap(),
            None
        );
        let args = parse(&["deposit", "--wallet", "4", "--amount", "-5", "--key", "d"]);
        assert!(matches!(
            args.verb.request(admin()).unwrap(),
            Some(Request::Deposit {
                wallet: 4,
                amount: -5,
                ..
            })
        ));
        let args = parse(&["complete", "--job", "2", "--proof", "photo"]);
        assert!(matches!(
            args.verb.request(provider(9)).unwrap(),
            Some(Request::Complete { provider: 9, job: 2, proof }) if proof == b"photo"
        ));
        let args = parse(&["history", "--from-seq", "3"]);
        assert_eq!(
            args.verb.request(customer(6)).unwrap(),
            Some(Request::History {
                wallet: 6,
                from_seq: 3,
                limit: 100
            })
        );
        assert!(
            parse(&["earnings"]).verb.request(provider(2)).unwrap()
                == Some(Request::Earnings { provider: 2 })
        );
        assert_eq!(
            parse(&["balance"]).verb.request(provider(2)).unwrap(),
            Some(Request::Balance {
                wallet: fixit_protocol::ids::PROVIDER_WALLETS + 2
            }),
            "a provider's own wallet"
        );
        assert!(
            parse(&["balance"]).verb.request(admin()).is_err(),
            "an admin names the wallet"
        );
    }

    #[test]
    fn refusals_show_as_their_error_body() {
        let refused = Refused::from_error(&ApiError::Forbidden("wallet 8 is not yours".into()));
        let text = refused.to_string();
        assert!(text.contains(r#""error":"forbidden""#), "{text}");
    }
}
