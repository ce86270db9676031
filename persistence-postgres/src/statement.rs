//! One statement and its arguments, sent either as a prepared statement (the default:
//! parsed once per connection, then one round trip with binary binds) or as one simple
//! query with the arguments written as literals (for poolers such as PgBouncer in
//! transaction mode before 1.21, which cannot keep prepared statements).
//!
//! Both forms are one round trip per operation. Literals are escaped with `E'...'`
//! strings, whose meaning does not depend on `standard_conforming_strings`; ids never
//! contain NUL (core rejects control characters), and JSON text escapes it.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row};

/// The SQL type of an argument, so that a NULL binds with the right type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ArgType {
    Text,
    Int16,
    Int32,
    Int64,
    Uuid,
    Json,
    TextArray,
    Bytes,
}

/// One argument of a [`Call`].
#[derive(Debug)]
pub(crate) enum Arg {
    Null(ArgType),
    Text(String),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Uuid(uuid::Uuid),
    Json(Box<RawValue>),
    TextArray(Vec<String>),
    Bytes(Vec<u8>),
    /// A value that could not be encoded; sending the call fails with this message.
    Unencodable(String),
}

/// A value that can be an argument.
pub(crate) trait IntoArg {
    fn into_arg(self) -> Arg;
    fn null() -> Arg;
}

macro_rules! into_arg {
    ($t:ty, $variant:ident, $ty:ident, |$v:ident| $e:expr) => {
        impl IntoArg for $t {
            fn into_arg(self) -> Arg {
                let $v = self;
                Arg::$variant($e)
            }
            fn null() -> Arg {
                Arg::Null(ArgType::$ty)
            }
        }
    };
}

into_arg!(&str, Text, Text, |v| v.to_owned());
into_arg!(&String, Text, Text, |v| v.clone());
into_arg!(i16, Int16, Int16, |v| v);
into_arg!(i32, Int32, Int32, |v| v);
into_arg!(i64, Int64, Int64, |v| v);
into_arg!(uuid::Uuid, Uuid, Uuid, |v| v);
into_arg!(&[String], TextArray, TextArray, |v| v.to_vec());
into_arg!(&[u8], Bytes, Bytes, |v| v.to_vec());

impl<T: IntoArg> IntoArg for Option<T> {
    fn into_arg(self) -> Arg {
        self.map_or_else(T::null, IntoArg::into_arg)
    }
    fn null() -> Arg {
        T::null()
    }
}

impl<T: Serialize> IntoArg for Json<&T> {
    fn into_arg(self) -> Arg {
        match serde_json::value::to_raw_value(self.0) {
            Ok(raw) => Arg::Json(raw),
            Err(e) => Arg::Unencodable(format!("a JSON argument does not encode: {e}")),
        }
    }
    fn null() -> Arg {
        Arg::Null(ArgType::Json)
    }
}

/// How statements are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Prepared once per connection (the statement timeout is a startup option).
    Prepared,
    /// One simple query per operation, setting its own statement timeout.
    Simple { statement_timeout_ms: u64 },
}

/// A statement (`SELECT persistence.f($1, $2, ...)`) with its arguments.
#[derive(Debug)]
pub(crate) struct Call {
    sql: &'static str,
    args: Vec<Arg>,
}

impl Call {
    pub(crate) fn new(sql: &'static str) -> Self {
        Call {
            sql,
            args: Vec::new(),
        }
    }

    /// Adds the next argument (`$1`, `$2`, ... in order).
    pub(crate) fn bind(mut self, value: impl IntoArg) -> Self {
        self.args.push(value.into_arg());
        self
    }

    /// Runs the statement and returns the first column of every row.
    pub(crate) async fn fetch_all<T>(
        &self,
        conn: &mut PgConnection,
        protocol: Protocol,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
    {
        let rows = self.fetch_rows(conn, protocol).await?;
        rows.iter().map(|r| r.try_get::<T, _>(0)).collect()
    }

    /// The rows of the statement. The simple query goes through `Executor::fetch_all`
    /// (a boxed future): `RawSql::fetch_all`, an `async fn` generic over the executor,
    /// fails the compiler's higher-ranked `Send` check inside `async_trait` methods.
    fn fetch_rows<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        protocol: Protocol,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<PgRow>, sqlx::Error>> + Send + 'a>> {
        Box::pin(async move {
            if let Some(Arg::Unencodable(why)) =
                self.args.iter().find(|a| matches!(a, Arg::Unencodable(_)))
            {
                return Err(sqlx::Error::Encode(why.clone().into()));
            }
            if let Protocol::Simple {
                statement_timeout_ms,
            } = protocol
            {
                // One Query message runs as one implicit transaction, so SET LOCAL holds
                // for the statement and ends with it (no startup option, which poolers
                // refuse or drop).
                let sql = format!(
                    "SET LOCAL statement_timeout = {statement_timeout_ms}; {}",
                    self.render()
                );
                return sqlx::Executor::fetch_all(conn, sqlx::raw_sql(&sql)).await;
            }
            let mut query = sqlx::query(self.sql);
            for arg in &self.args {
                query = match arg {
                    Arg::Null(ArgType::Text) => query.bind(None::<&str>),
                    Arg::Null(ArgType::Int16) => query.bind(None::<i16>),
                    Arg::Null(ArgType::Int32) => query.bind(None::<i32>),
                    Arg::Null(ArgType::Int64) => query.bind(None::<i64>),
                    Arg::Null(ArgType::Uuid) => query.bind(None::<uuid::Uuid>),
                    Arg::Null(ArgType::Json) => query.bind(None::<Json<&RawValue>>),
                    Arg::Null(ArgType::TextArray) => query.bind(None::<Vec<String>>),
                    Arg::Null(ArgType::Bytes) => query.bind(None::<&[u8]>),
                    Arg::Text(s) => query.bind(s.as_str()),
                    Arg::Int16(i) => query.bind(*i),
                    Arg::Int32(i) => query.bind(*i),
                    Arg::Int64(i) => query.bind(*i),
                    Arg::Uuid(u) => query.bind(*u),
                    Arg::Json(raw) => query.bind(Json(&**raw)),
                    Arg::TextArray(v) => query.bind(v.as_slice()),
                    Arg::Bytes(v) => query.bind(v.as_slice()),
                    Arg::Unencodable(_) => query,
                };
            }
            query.fetch_all(conn).await
        })
    }

    /// The statement with every `$n` replaced by its argument as a literal.
    fn render(&self) -> String {
        let mut out = String::with_capacity(self.sql.len() + 64);
        let mut chars = self.sql.char_indices().peekable();
        while let Some((_, c)) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            let mut n = 0usize;
            while let Some(&(_, d)) = chars.peek() {
                let Some(digit) = d.to_digit(10) else { break };
                n = n * 10 + digit as usize;
                chars.next();
            }
            match n.checked_sub(1).and_then(|i| self.args.get(i)) {
                Some(arg) => literal(arg, &mut out),
                None => out.push_str("NULL"),
            }
        }
        out
    }
}

/// `E'...'` with backslashes and quotes escaped.
fn quoted(s: &str, out: &mut String) {
    out.push_str("E'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn literal(arg: &Arg, out: &mut String) {
    match arg {
        Arg::Null(ArgType::Text) => out.push_str("NULL::text"),
        Arg::Null(ArgType::Int16) => out.push_str("NULL::smallint"),
        Arg::Null(ArgType::Int32) => out.push_str("NULL::integer"),
        Arg::Null(ArgType::Int64) => out.push_str("NULL::bigint"),
        Arg::Null(ArgType::Uuid) => out.push_str("NULL::uuid"),
        Arg::Null(ArgType::Json) => out.push_str("NULL::jsonb"),
        Arg::Null(ArgType::TextArray) => out.push_str("NULL::text[]"),
        Arg::Null(ArgType::Bytes) => out.push_str("NULL::bytea"),
        Arg::Text(s) => {
            quoted(s, out);
            out.push_str("::text");
        }
        Arg::Int16(i) => out.push_str(&format!("({i})::smallint")),
        Arg::Int32(i) => out.push_str(&format!("({i})::integer")),
        Arg::Int64(i) => out.push_str(&format!("({i})::bigint")),
        Arg::Uuid(u) => out.push_str(&format!("'{u}'::uuid")),
        Arg::Json(raw) => {
            quoted(raw.get(), out);
            out.push_str("::jsonb");
        }
        Arg::TextArray(v) => {
            out.push_str("ARRAY[");
            for (i, s) in v.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quoted(s, out);
            }
            out.push_str("]::text[]");
        }
        Arg::Bytes(v) => {
            out.push_str("decode('");
            for b in v {
                out.push_str(&format!("{b:02x}"));
            }
            out.push_str("', 'hex')");
        }
        Arg::Unencodable(_) => out.push_str("NULL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped_and_typed() {
        let call = Call::new("SELECT f($1, $2, $3, $10, $4)")
            .bind("it's a \\ test")
            .bind(Some(5i64))
            .bind(None::<uuid::Uuid>)
            .bind(&["a'b".to_string()][..]);
        assert_eq!(
            call.render(),
            "SELECT f(E'it\\'s a \\\\ test'::text, (5)::bigint, NULL::uuid, NULL, ARRAY[E'a\\'b']::text[])"
        );
    }
}
