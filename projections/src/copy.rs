//! Rows sent to Postgres with `COPY … FROM STDIN (FORMAT binary)`, in large chunks.
//!
//! tokio-postgres's `BinaryCopyInWriter` sends its buffer whenever it passes 4 KiB: a message
//! to the connection's task and a socket write every few rows. A rebuild copies a million audit
//! records, so this writer encodes the same format (PostgreSQL's documentation, "COPY", "Binary
//! Format") and sends [`CHUNK`] bytes at a time.

use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::CopyInSink;
use tokio_postgres::types::{IsNull, ToSql, Type};

/// Bytes encoded before they are sent.
const CHUNK: usize = 256 * 1024;

/// The binary format's signature, then its flags and header extension (both empty).
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A `COPY … FROM STDIN (FORMAT binary)` in progress; [`BinaryCopy::finish`] ends it (dropped
/// before, the copy fails and its transaction with it).
pub(crate) struct BinaryCopy {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    types: &'static [Type],
    buf: BytesMut,
}

impl BinaryCopy {
    /// Starts the copy `sql`, whose columns have `types`, in order.
    pub async fn start(
        tx: &deadpool_postgres::Transaction<'_>,
        sql: &str,
        types: &'static [Type],
    ) -> Result<BinaryCopy, tokio_postgres::Error> {
        let sink = Box::pin(tx.copy_in(sql).await?);
        let mut buf = BytesMut::with_capacity(CHUNK + CHUNK / 4);
        buf.put_slice(HEADER);
        Ok(BinaryCopy { sink, types, buf })
    }

    /// Encodes one row (a value per column, of the column's type), sending the encoded rows
    /// once they fill a chunk.
    pub async fn row(&mut self, values: &[&(dyn ToSql + Sync)]) -> anyhow::Result<()> {
        anyhow::ensure!(
            values.len() == self.types.len(),
            "a row of {} values for {} columns",
            values.len(),
            self.types.len()
        );
        self.buf.put_i16(i16::try_from(values.len())?);
        for (value, ty) in values.iter().zip(self.types) {
            // Each value is its length, then its bytes (no bytes and length -1 for NULL).
            let at = self.buf.len();
            self.buf.put_i32(0);
            let length = match value
                .to_sql_checked(ty, &mut self.buf)
                .map_err(|e| anyhow::anyhow!("encoding a {ty} value: {e}"))?
            {
                IsNull::Yes => -1,
                IsNull::No => i32::try_from(self.buf.len() - at - 4)?,
            };
            self.buf[at..at + 4].copy_from_slice(&length.to_be_bytes());
        }
        if self.buf.len() >= CHUNK {
            self.sink.send(self.buf.split().freeze()).await?;
        }
        Ok(())
    }

    /// Sends what is left and the trailer, and ends the copy; answers the rows copied.
    pub async fn finish(mut self) -> Result<u64, tokio_postgres::Error> {
        self.buf.put_i16(-1);
        self.sink.send(self.buf.split().freeze()).await?;
        self.sink.as_mut().finish().await
    }
}
