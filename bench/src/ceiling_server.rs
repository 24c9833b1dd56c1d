//! The widget query's ceiling: the least an HTTP server can do to answer a page of 50 admins.
//! axum and a deadpool-postgres pool (sized like `gatehouse serve`'s), one prepared SELECT per
//! request on a copy of the admins read model's table, JSON out; no authentication, no
//! count, no middleware. It runs as its own process (`gatehouse-bench ceiling-server`, hidden),
//! like `gatehouse serve`, and the same load generator drives both.

use std::net::SocketAddr;
use std::process::Stdio;
use std::str::FromStr;

use anyhow::{Context, anyhow};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Connections in the pool: `gatehouse serve`'s default (`GATEHOUSE_DB_POOL`).
const POOL_SIZE: usize = 32;

const PAGE: &str = "SELECT admin_id, email, first_name, last_name, role, created_at, mfa_required,
                           requirement_source, enrolled, locked
                    FROM bench_ceiling.admins
                    WHERE org_id = $1 AND NOT mfa_required AND admin_id > $2
                    ORDER BY admin_id LIMIT $3";

#[derive(clap::Parser, Debug)]
#[command(name = "gatehouse-bench ceiling-server")]
pub struct ServerArgs {
    /// Where to listen.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The database holding `bench_ceiling.admins`.
    #[arg(long)]
    pub database: String,
}

/// `gatehouse-bench ceiling-server` (this very binary) listening on `listen`.
pub fn command(listen: SocketAddr, database_url: &str) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("finding the benchmark's own binary")?;
    let mut command = Command::new(exe);
    command
        .arg(crate::CEILING_SERVER)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--database")
        .arg(database_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(command)
}

#[derive(Debug, Deserialize)]
struct PageParams {
    org: Uuid,
    limit: i64,
}

#[derive(Debug, Serialize)]
struct Admin {
    id: Uuid,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    created_at: DateTime<Utc>,
    mfa_required: bool,
    requirement_source: Option<String>,
    enrolled: bool,
    locked: bool,
}

/// Serves until killed.
pub async fn serve(args: &ServerArgs) -> anyhow::Result<()> {
    let config = tokio_postgres::Config::from_str(&args.database)
        .map_err(|e| anyhow!("--database is not a Postgres URL: {e}"))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .build()
        .context("building the pool")?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/admins", get(page))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    axum::serve(listener, app).await.context("serving")
}

async fn page(
    State(pool): State<Pool>,
    Query(params): Query<PageParams>,
) -> Result<Json<Vec<Admin>>, (StatusCode, String)> {
    read_page(&pool, &params).await.map(Json).map_err(|e| {
        eprintln!("ceiling server: {e:#}");
        (StatusCode::INTERNAL_SERVER_ERROR, "failed".to_owned())
    })
}

async fn read_page(pool: &Pool, params: &PageParams) -> anyhow::Result<Vec<Admin>> {
    let client = pool.get().await.context("getting a connection")?;
    let statement = client
        .prepare_cached(PAGE)
        .await
        .context("preparing the page")?;
    let rows = client
        .query(&statement, &[&params.org, &Uuid::nil(), &params.limit])
        .await
        .context("reading the page")?;
    rows.iter()
        .map(|row| {
            Ok(Admin {
                id: row.try_get(0)?,
                email: row.try_get(1)?,
                first_name: row.try_get(2)?,
                last_name: row.try_get(3)?,
                role: row.try_get(4)?,
                created_at: row.try_get(5)?,
                mfa_required: row.try_get(6)?,
                requirement_source: row.try_get(7)?,
                enrolled: row.try_get(8)?,
                locked: row.try_get(9)?,
            })
        })
        .collect()
}
