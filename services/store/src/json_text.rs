//! A JSON document bound as it was encoded.

use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// A JSON document already encoded (valid JSON text), bound as `json` or `jsonb` without a
/// `serde_json::Value` tree built and walked again for it.
#[derive(Debug)]
pub struct JsonText(pub Vec<u8>);

impl ToSql for JsonText {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary form is a version byte, then the text; json's is the text alone.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}
