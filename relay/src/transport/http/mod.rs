//! The HTTP routes beside the WebSocket endpoints: publishing, history, health, readiness and
//! metrics, and Supabase's REST broadcast. Each handler takes its identity from [`super::auth::Authenticated`] and answers
//! refusals with [`super::error::ApiError`].

pub mod cors;
pub mod health;
pub mod history;
pub mod limits;
pub mod metrics;
pub mod publish;
pub mod supabase;
