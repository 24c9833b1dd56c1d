//! The routes, one module per resource.

pub mod admins;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod bulk;
pub mod events;
pub mod health;
pub mod me;
pub mod mfa;
pub mod openapi;
pub mod settings;
pub mod setup;
pub mod widgets;
