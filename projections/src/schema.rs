//! The Postgres schemas the read models live in. Each projection owns `proj_<name>`, built from
//! its `.sql` file run with `search_path` set to the schema, so the same DDL also builds the
//! `proj_<name>_next` schema a rebuild fills.

use anyhow::Context;
use gatehouse_store::Db;

use crate::Projection;

/// Serialises schema creation across processes (advisory locks are per database).
const SCHEMA_LOCK_KEY: i64 = 7_231_100;

/// Creates every projection's schema that does not exist yet, with its checkpoint at 0. Safe to
/// call from many processes at once.
pub async fn ensure_schemas(db: &Db) -> anyhow::Result<()> {
    let mut client = db.client().await?;
    let tx = client
        .transaction()
        .await
        .context("beginning the schema creation")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
        .await
        .context("taking the schema creation lock")?;
    for projection in Projection::ALL {
        let schema = projection.schema();
        if !exists(&tx, &schema).await? {
            create(&tx, projection, &schema).await?;
            tracing::info!(projection = projection.name(), %schema, "created the read model's schema");
        }
    }
    tx.commit()
        .await
        .context("committing the schema creation")?;
    Ok(())
}

/// Whether the schema exists.
pub(crate) async fn exists(
    client: &impl deadpool_postgres::GenericClient,
    schema: &str,
) -> anyhow::Result<bool> {
    let row = client
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
        .await
        .with_context(|| format!("looking up schema {schema}"))?;
    Ok(row.is_some())
}

/// Creates `schema` holding the projection's tables, in the caller's transaction. The
/// transaction's `search_path` is left pointing at the new schema.
pub(crate) async fn create(
    tx: &deadpool_postgres::Transaction<'_>,
    projection: Projection,
    schema: &str,
) -> anyhow::Result<()> {
    let quoted = quote(schema);
    let sql = format!(
        "CREATE SCHEMA {quoted}; SET LOCAL search_path TO {quoted};\n{}",
        projection.ddl()
    );
    tx.batch_execute(&sql)
        .await
        .with_context(|| format!("creating schema {schema}"))
}

/// `schema` as a quoted SQL identifier.
pub(crate) fn quote(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}
