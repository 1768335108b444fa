//! The route table: every path, method and operation the bridge serves — one route
//! per command of the command table (`fixit_protocol::commands::COMMANDS`) and the
//! bridge's own routes. The router is built from it and so is the OpenAPI
//! document, so the two cannot drift apart.

use super::state::AppState;
use super::{cluster, commands, dashboard, events, failpoints, operations, request_id};
use axum::extract::DefaultBodyLimit;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{middleware, Router};
use fixit_actors::config::ServerSection;
use fixit_protocol::command_spec::{CommandSpec, Method};
use fixit_protocol::commands::COMMANDS;
use std::sync::OnceLock;
use std::time::Duration;
use tower_http::timeout::RequestBodyTimeoutLayer;

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

    fn of(method: Method) -> Verb {
        match method {
            Method::Get => Verb::Get,
            Method::Post => Verb::Post,
            Method::Put => Verb::Put,
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

/// What a route does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operation {
    /// A command of the command table.
    Command(&'static CommandSpec),
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

impl Operation {
    /// The OpenAPI `operationId`.
    pub(crate) fn id(self) -> String {
        match self {
            Operation::Command(spec) => spec.name.to_owned(),
            other => format!("{other:?}"),
        }
    }
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

/// The bridge's own routes (not commands).
const OWN_ROUTES: &[Route] = &[
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

/// Every route: the commands in table order, then the bridge's own.
pub(crate) fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        COMMANDS
            .iter()
            .map(|spec| route(Verb::of(spec.method), spec.path, Operation::Command(spec)))
            .chain(OWN_ROUTES.iter().copied())
            .collect()
    })
}

/// The handler of `operation` for `verb`.
fn handler(verb: Verb, operation: Operation) -> MethodRouter<AppState> {
    let filter = verb.filter();
    match operation {
        Operation::Command(spec) => on(filter, move |state, caller, path, query, request| {
            commands::serve(spec, state, caller, path, query, request)
        }),
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
pub(crate) fn router(state: AppState, config: &ServerSection) -> Router {
    let body_timeout = Duration::from_millis(config.http_connections.body_timeout_ms);
    routes()
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, handler(route.verb, route.operation))
        })
        .fallback(operations::no_route)
        .method_not_allowed_fallback(operations::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.http_body_bytes_max as usize))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(middleware::from_fn(request_id::assign))
        .with_state(state)
}
