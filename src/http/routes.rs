//! The route table: every path, method and operation the bridge serves. The router
//! is built from it and so is the OpenAPI document, so the two cannot drift apart.

use super::state::AppState;
use super::{
    cluster, dashboard, events, failpoints, jobs, operations, providers, request_id, wallets,
};
use axum::extract::DefaultBodyLimit;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{middleware, Router};

/// An HTTP method the bridge uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
}

impl Verb {
    /// Lowercase, as an OpenAPI path item key.
    pub(crate) fn openapi_key(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
        }
    }
}

/// What a route does; also its OpenAPI `operationId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Balance,
    History,
    Deposit,
    Withdraw,
    ProviderStatus,
    ProviderOnline,
    ProviderOffline,
    ProviderLocation,
    BookJob,
    JobStatus,
    Accept,
    Decline,
    Start,
    Complete,
    Cancel,
    Nearby,
    Events,
    DashboardData,
    DashboardPage,
    Cluster,
    Failpoints,
    ArmFailpoints,
    Health,
    Ready,
    Metrics,
    OpenApi,
}

/// One served route.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    pub(crate) verb: Verb,
    pub(crate) path: &'static str,
    pub(crate) operation: Operation,
}

const fn route(verb: Verb, path: &'static str, operation: Operation) -> Route {
    Route {
        verb,
        path,
        operation,
    }
}

/// Every route, in the order the OpenAPI document lists them.
pub(crate) const ROUTES: &[Route] = &[
    route(Verb::Get, "/v1/wallets/{id}", Operation::Balance),
    route(Verb::Get, "/v1/wallets/{id}/history", Operation::History),
    route(Verb::Post, "/v1/wallets/{id}/deposit", Operation::Deposit),
    route(Verb::Post, "/v1/wallets/{id}/withdraw", Operation::Withdraw),
    route(Verb::Get, "/v1/providers/{id}", Operation::ProviderStatus),
    route(
        Verb::Post,
        "/v1/providers/{id}/online",
        Operation::ProviderOnline,
    ),
    route(
        Verb::Post,
        "/v1/providers/{id}/offline",
        Operation::ProviderOffline,
    ),
    route(
        Verb::Put,
        "/v1/providers/{id}/location",
        Operation::ProviderLocation,
    ),
    route(Verb::Post, "/v1/jobs", Operation::BookJob),
    route(Verb::Get, "/v1/jobs/{id}", Operation::JobStatus),
    route(Verb::Post, "/v1/jobs/{id}/accept", Operation::Accept),
    route(Verb::Post, "/v1/jobs/{id}/decline", Operation::Decline),
    route(Verb::Post, "/v1/jobs/{id}/start", Operation::Start),
    route(Verb::Post, "/v1/jobs/{id}/complete", Operation::Complete),
    route(Verb::Post, "/v1/jobs/{id}/cancel", Operation::Cancel),
    route(Verb::Post, "/v1/nearby", Operation::Nearby),
    route(Verb::Get, "/v1/events", Operation::Events),
    route(Verb::Get, "/v1/dashboard", Operation::DashboardData),
    route(Verb::Get, "/", Operation::DashboardPage),
    route(Verb::Get, "/cluster", Operation::Cluster),
    route(Verb::Get, "/v1/admin/failpoints", Operation::Failpoints),
    route(Verb::Put, "/v1/admin/failpoints", Operation::ArmFailpoints),
    route(Verb::Get, "/health", Operation::Health),
    route(Verb::Get, "/ready", Operation::Ready),
    route(Verb::Get, "/metrics", Operation::Metrics),
    route(Verb::Get, "/openapi.json", Operation::OpenApi),
];

/// The handler of `operation` for `verb`.
fn handler(verb: Verb, operation: Operation) -> MethodRouter<AppState> {
    let filter = verb.filter();
    match operation {
        Operation::Balance => on(filter, wallets::balance),
        Operation::History => on(filter, wallets::history),
        Operation::Deposit => on(filter, wallets::deposit),
        Operation::Withdraw => on(filter, wallets::withdraw),
        Operation::ProviderStatus => on(filter, providers::status),
        Operation::ProviderOnline => on(filter, providers::online),
        Operation::ProviderOffline => on(filter, providers::offline),
        Operation::ProviderLocation => on(filter, providers::location),
        Operation::BookJob => on(filter, jobs::book),
        Operation::JobStatus => on(filter, jobs::status),
        Operation::Accept => on(filter, jobs::accept),
        Operation::Decline => on(filter, jobs::decline),
        Operation::Start => on(filter, jobs::start),
        Operation::Complete => on(filter, jobs::complete),
        Operation::Cancel => on(filter, jobs::cancel),
        Operation::Nearby => on(filter, providers::nearby),
        Operation::Events => on(filter, events::open),
        Operation::DashboardData => on(filter, dashboard::data),
        Operation::DashboardPage => on(filter, dashboard::page),
        Operation::Cluster => on(filter, cluster::status),
        Operation::Failpoints => on(filter, failpoints::read),
        Operation::ArmFailpoints => on(filter, failpoints::arm),
        Operation::Health => on(filter, operations::health),
        Operation::Ready => on(filter, operations::ready),
        Operation::Metrics => on(filter, operations::metrics),
        Operation::OpenApi => on(filter, operations::openapi_document),
    }
}

/// The router of every route, with JSON answers for unknown routes and methods,
/// the body limit and request ids.
pub(crate) fn router(state: AppState, body_bytes_max: usize) -> Router {
    ROUTES
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, handler(route.verb, route.operation))
        })
        .fallback(operations::no_route)
        .method_not_allowed_fallback(operations::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}
