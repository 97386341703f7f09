//! The admin console at `/admin`: a browser UI and its JSON API, served by the relay, off unless
//! an admin token is configured (docs/admin.md).
//!
//! A transport like the others: it reads the shared [`App`] (config, pool, hub, the metrics
//! registry, the webhook worker), runs its statements through [`crate::pg::admin`] (as the
//! `realtime_admin` role) and [`crate::pg::authz::check_subscribe`] (the relay's own subscribe
//! check), and its Inspector socket is [`crate::transport::ws::upgrade`] with protocol v1 under
//! an identity the admin picks. [`router`] is the one line that mounts it.
//!
//! - [`settings`]: the console's flags (a clap group flattened into the server's);
//! - [`credential`]: the admin token (`--admin-token`) and the signed sessions of a sign-in;
//! - [`auth`]: the same-origin rule, the guard every route passes, sign-in and sign-out;
//! - [`console`]: the routes' state, and how an action is committed and logged;
//! - [`sampler`]: the metrics registry read every second into a five-minute ring;
//! - [`report`]: this relay's figures written to `realtime.relays.stats` for the other relays'
//!   consoles;
//! - [`overview`], [`channels`], [`messages`], [`inspect`], [`webhooks`], [`relays`]: the API,
//!   one file a page;
//! - [`assets`]: the page, its scripts and styles, embedded in the binary;
//! - `paging`: a page of rows and whether there are more;
//! - [`error`]: the console's error type and its JSON answer.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post, put};
use axum::Router;

use crate::app::App;

pub mod assets;
pub mod auth;
pub mod channels;
pub mod console;
pub mod credential;
pub mod error;
pub mod inspect;
pub mod messages;
pub mod overview;
mod paging;
pub mod relays;
pub mod report;
pub mod sampler;
pub mod settings;
pub mod webhooks;

pub use console::Console;
pub use error::AdminError;
pub use settings::{AdminArgs, AdminConfigError, AdminSettings};

/// Largest request body the console accepts (a test message's payload is the biggest).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The console's routes under `/admin`, with the sampler and the stats report started; an
/// empty router when no admin token is configured (every `/admin` path is then a 404).
pub fn router(app: Arc<App>) -> Router {
    let Some(token) = app.config.admin.token() else {
        return Router::new();
    };
    let samples = Arc::new(sampler::Ring::default());
    tokio::spawn(sampler::run(app.clone(), samples.clone()));
    tokio::spawn(report::run(app.clone()));
    tracing::info!("admin console on http://{}/admin", app.config.bind);
    let console = Arc::new(Console { credential: credential::Credential::new(token), app, samples });
    let api = Router::new()
        .route("/meta", get(inspect::meta))
        .route("/overview", get(overview::overview))
        .route("/channels", get(channels::list).post(channels::create))
        .route("/channels/validate", post(channels::validate))
        .route("/channels/{id}", put(channels::update).delete(channels::remove))
        .route("/channels/{id}/secret", get(channels::reveal_secret))
        .route("/messages", get(messages::list))
        .route("/messages/{id}", get(messages::detail))
        .route("/inspect/check", post(inspect::check))
        .route("/inspect/publish", post(inspect::publish))
        .route("/inspect/socket", get(inspect::socket))
        .route("/webhooks", get(webhooks::list))
        .route("/webhooks/{id}/retry", post(webhooks::retry))
        .route("/webhooks/{id}/discard", post(webhooks::discard))
        .route("/relays", get(relays::list))
        .route("/presence", get(relays::presence))
        .route("/audit", get(relays::audit))
        .route("/session", post(auth::sign_in).delete(auth::sign_out));
    let pages = Router::new()
        .route("/admin", get(assets::page))
        .route("/admin/", get(assets::page))
        .route("/admin/assets/{name}", get(assets::asset))
        .nest("/admin/api", api)
        .route("/admin/{*rest}", any(error::not_found));
    pages
        .layer(axum::middleware::from_fn_with_state(console.clone(), auth::guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(console)
}
