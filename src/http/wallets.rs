//! Wallet endpoints: balance, history, deposit (admin) and withdraw.

use super::extract::{Caller, IdPath, JsonBody, QueryParams};
use super::failure::Failure;
use super::state::AppState;
use crate::api::Request;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

/// Ledger entries a history page returns when the client does not say.
pub(crate) const HISTORY_LIMIT_DEFAULT: u32 = 100;

/// Query of `GET /v1/wallets/{id}/history`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    #[serde(default)]
    from_seq: u64,
    #[serde(default = "history_limit_default")]
    limit: u32,
}

fn history_limit_default() -> u32 {
    HISTORY_LIMIT_DEFAULT
}

/// Body of deposit and withdraw.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoneyBody {
    key: String,
    amount: i64,
}

/// `GET /v1/wallets/{id}`: the balance.
pub(crate) async fn balance(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(wallet): IdPath,
) -> Result<Response, Failure> {
    caller.run(&state, Request::Balance { wallet }).await
}

/// `GET /v1/wallets/{id}/history?from_seq&limit`: a page of the ledger.
pub(crate) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(wallet): IdPath,
    QueryParams(query): QueryParams<HistoryQuery>,
) -> Result<Response, Failure> {
    let request = Request::History {
        wallet,
        from_seq: query.from_seq,
        limit: query.limit,
    };
    caller.run(&state, request).await
}

/// `POST /v1/wallets/{id}/deposit`: money in (admin only).
pub(crate) async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(wallet): IdPath,
    JsonBody(body): JsonBody<MoneyBody>,
) -> Result<Response, Failure> {
    let request = Request::Deposit {
        wallet,
        key: body.key,
        amount: body.amount,
    };
    caller.run(&state, request).await
}

/// `POST /v1/wallets/{id}/withdraw`: money out.
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    IdPath(wallet): IdPath,
    JsonBody(body): JsonBody<MoneyBody>,
) -> Result<Response, Failure> {
    let request = Request::Withdraw {
        wallet,
        key: body.key,
        amount: body.amount,
    };
    caller.run(&state, request).await
}
