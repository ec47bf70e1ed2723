//! The service a command talks to: the connection, the client, what the
//! service says of itself, and a call's arguments made from the command
//! line by the method's described types.

use crate::{
    convert::{self, Converter},
    failure::Failure,
};
use rpc_runtime::{
    Client, Connection, FaultKind, Metadata, MethodDescription, ServiceDescription, Shape,
    TypeDefinition, TypeRef,
};
use serde_json::Value as Json;
use std::{collections::BTreeMap, time::Duration};

/// The broker and the service on one queue.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) client: Client,
    pub(crate) queue: String,
    /// `None` for a server that does not describe itself.
    pub(crate) description: Option<ServiceDescription>,
    // Kept open while the client is used.
    _connection: Connection,
}

impl Target {
    /// Connects and asks the service on `queue` to describe itself, with
    /// the command's `metadata` (a server's interceptors see that question
    /// as any request: one that wants credentials wants them there too);
    /// calls carry W3C trace context if `trace_context`.
    pub(crate) async fn open(
        url: &str,
        queue: &str,
        timeout: Option<Duration>,
        trace_context: bool,
        metadata: &Metadata,
    ) -> Result<Self, Failure> {
        // `timeout` is the calls' (`--timeout`), not the handshake's: a short
        // one must fail as a call that timed out, not as a broker that did
        // not answer; connecting keeps the connection's own limit.
        let connection = Connection::builder(url).name("rpc").connect().await?;
        let mut client = Client::builder().trace_context(trace_context);
        if let Some(timeout) = timeout {
            client = client.timeout(timeout);
        }
        let client = client.build(&connection).await?;
        // No server is an error at once, not a request left to wait.
        let mut describe = client.describe(queue).require_server();
        for (name, value) in metadata.iter() {
            describe = describe.header(name, value);
        }
        let description = match describe.await {
            Ok(description) => Some(description),
            Err(error)
                if error
                    .fault()
                    .is_some_and(|fault| fault.kind() == &FaultKind::UnknownMethod) =>
            {
                None
            }
            Err(error) => return Err(error.into()),
        };
        Ok(Self {
            client,
            queue: queue.to_owned(),
            description,
            _connection: connection,
        })
    }

    /// The service's name, for the calls' spans and metrics.
    pub(crate) fn service(&self) -> &str {
        self.description
            .as_ref()
            .map_or(self.queue.as_str(), |description| &description.service)
    }

    /// The described method called `name`, or why it cannot be called.
    /// `Ok(None)` when the service does not describe itself.
    pub(crate) fn method(&self, name: &str) -> Result<Option<&MethodDescription>, Failure> {
        let Some(description) = &self.description else {
            return Ok(None);
        };
        match description.method(name) {
            Some(method) => Ok(Some(method)),
            None => Err(Failure::UnknownMethod {
                service: description.service.clone(),
                queue: self.queue.clone(),
                method: name.to_owned(),
                known: description.methods.iter().map(|m| m.name.clone()).collect(),
            }),
        }
    }

    /// The request body of a call to `method` with `args`: each a JSON value
    /// as the command line gives it (`ArgSource`), converted by the
    /// method's argument types.
    pub(crate) fn encode_args(&self, method: &str, args: &ArgSource) -> Result<Vec<u8>, Failure> {
        let described = self.method(method)?;
        let no_types = BTreeMap::new();
        let types = self.description.as_ref().map_or(&no_types, |d| &d.types);
        let converter = Converter::new(types);
        let Some(described) = described else {
            // Nothing to check against: the JSON as it is.
            let values = args.values(|_| None, types)?;
            return Ok(convert::encode(&rmpv::Value::Array(
                values.iter().map(convert::plain).collect(),
            )));
        };
        let takes = described.args.len();
        // Counted before parsed: an extra word is not "argument 2 is not JSON".
        if let ArgSource::Words(words) = args
            && words.len() > takes
        {
            return Err(count_error(described, words.len()));
        }
        let values = args.values(
            |i| described.args.get(i).map(|arg| (&arg.name, &arg.ty)),
            types,
        )?;
        if values.len() > takes {
            return Err(count_error(described, values.len()));
        }
        let mut encoded = Vec::with_capacity(takes);
        for (i, arg) in described.args.iter().enumerate() {
            let value = match (values.get(i), &arg.ty.shape) {
                (Some(json), shape) => {
                    converter
                        .convert(json, shape)
                        .map_err(|mismatch| Failure::BadArgument {
                            position: i + 1,
                            name: arg.name.clone(),
                            written: arg.ty.written.clone(),
                            mismatch: Box::new(mismatch),
                        })?
                }
                // Left out at the end: `None` (PROTOCOL.md §9).
                (None, Shape::Option(_)) => rmpv::Value::Nil,
                (None, _) => return Err(count_error(described, values.len())),
            };
            encoded.push(value);
        }
        Ok(convert::encode(&rmpv::Value::Array(encoded)))
    }
}

fn count_error(method: &MethodDescription, given: usize) -> Failure {
    let args: Vec<String> = method
        .args
        .iter()
        .map(|arg| format!("{}: {}", arg.name, arg.ty.written))
        .collect();
    let signature = match args.len() {
        0 => "no arguments".to_owned(),
        1 => format!("1 argument ({})", args.join(", ")),
        n => format!("{n} arguments ({})", args.join(", ")),
    };
    Failure::ArgumentCount {
        method: method.name.clone(),
        signature,
        given,
    }
}

/// A call's arguments as the command line gives them: one JSON value per
/// word, or one JSON array (`--args`).
#[derive(Debug, Clone)]
pub(crate) enum ArgSource {
    Words(Vec<String>),
    Array(String),
}

impl ArgSource {
    /// The arguments as JSON. `described(i)` gives argument `i`'s name and
    /// shape, if known: a word that is not JSON is taken as a string where a
    /// string is expected (`rpc call greeter greet Alice`), and a name where
    /// an enum is (`rpc call shop order '..' Pickup`: serde writes a unit
    /// variant as its name, `"Pickup"`).
    fn values<'a>(
        &self,
        described: impl Fn(usize) -> Option<(&'a String, &'a TypeRef)>,
        types: &BTreeMap<String, TypeDefinition>,
    ) -> Result<Vec<Json>, Failure> {
        match self {
            ArgSource::Array(text) => match serde_json::from_str(text) {
                Ok(Json::Array(values)) => Ok(values),
                Ok(_) => Err(Failure::Usage(
                    "`--args` takes a JSON array of the arguments, for example '[30]'".to_owned(),
                )),
                Err(error) => Err(Failure::Usage(format!("`--args` is not JSON: {error}"))),
            },
            ArgSource::Words(words) => words
                .iter()
                .enumerate()
                .map(|(i, word)| match serde_json::from_str(word) {
                    Ok(value) => Ok(value),
                    Err(error) => match described(i) {
                        Some((_, ty)) if stands_for(word, &ty.shape, types, 0) => {
                            Ok(Json::String(word.clone()))
                        }
                        Some((name, ty)) => Err(Failure::NotJson {
                            position: i + 1,
                            name: format!("{name}: {}", ty.written),
                            message: error.to_string(),
                        }),
                        None => Err(Failure::NotJsonUndescribed {
                            position: i + 1,
                            message: error.to_string(),
                        }),
                    },
                })
                .collect(),
        }
    }
}

/// Whether a bare word can stand for a value of `shape`: any word for a
/// string (bytes: a `Uuid`), a name for an enum, as serde writes a unit
/// variant (the converter then checks that it is one, and lists them if
/// not). `depth` bounds the newtypes followed, in case a description names
/// itself.
fn stands_for(
    word: &str,
    shape: &Shape,
    types: &BTreeMap<String, TypeDefinition>,
    depth: usize,
) -> bool {
    match shape {
        Shape::Str | Shape::Char | Shape::Bytes => true,
        Shape::Option(inner) => stands_for(word, inner, types, depth),
        Shape::Named(name) if depth < 8 => match types.get(name) {
            Some(TypeDefinition::Enum(_)) => is_name(word),
            Some(TypeDefinition::Newtype(inner)) => stands_for(word, inner, types, depth + 1),
            _ => false,
        },
        _ => false,
    }
}

/// A word as a variant's name is written: a letter or `_`, then letters,
/// digits and `_` (anything else, `{Courier: Bob}` say, is JSON gone wrong).
fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Call metadata from `-H name=value` options.
pub(crate) fn metadata(headers: &[String]) -> Result<Metadata, Failure> {
    let mut metadata = Metadata::new();
    for header in headers {
        let Some((name, value)) = header.split_once('=') else {
            return Err(Failure::Usage(format!(
                "header `{header}` is not `name=value`"
            )));
        };
        metadata
            .insert(name.trim(), value)
            .map_err(|error| Failure::Usage(format!("header `{name}`: {error}")))?;
    }
    Ok(metadata)
}
