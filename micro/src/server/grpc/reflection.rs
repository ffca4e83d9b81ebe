//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), so that
//! grpcurl, Postman and other generic tools can find the services and,
//! given the service's descriptors, its methods and messages.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

use super::frame::{self, GrpcBody, Out, Source};
use super::{long, response, status, trailers};
use crate::codec::ContentType;
use crate::server::Shared;
use crate::{Error, Result};

/// The descriptors reflection answers with: files by name, and where each
/// symbol is defined.
#[derive(Clone, Debug, Default)]
pub(crate) struct Descriptors(Arc<Index>);

#[derive(Debug, Default)]
struct Index {
    /// File name -> the encoded `FileDescriptorProto`, and its imports.
    files: HashMap<String, (Bytes, Vec<String>)>,
    /// Fully qualified symbol (no leading dot) -> its file.
    symbols: HashMap<String, String>,
    /// `(extended type, field number)` -> the file of the extension.
    extensions: HashMap<(String, i32), String>,
}

impl Descriptors {
    /// The index of encoded `FileDescriptorSet`s.
    ///
    /// # Errors
    /// 500 for a set that does not decode.
    pub(crate) fn new(sets: &[Bytes]) -> Result<Self> {
        let mut index = Index::default();
        for set in sets {
            let set = FileDescriptorSet::decode(set.as_ref()).map_err(|e| {
                Error::internal(format!(
                    "the file descriptor set given for gRPC reflection does not decode: {e}"
                ))
            })?;
            for file in set.file {
                index.add(file);
            }
        }
        Ok(Self(Arc::new(index)))
    }
}

/// `package.name`, or `name` without a package.
fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

impl Index {
    fn add(&mut self, file: FileDescriptorProto) {
        let name = file.name().to_owned();
        let package = file.package().to_owned();
        for message in &file.message_type {
            self.message(&name, &package, message);
        }
        for e in &file.enum_type {
            self.symbols
                .insert(qualify(&package, e.name()), name.clone());
        }
        for service in &file.service {
            let full = qualify(&package, service.name());
            for method in &service.method {
                self.symbols
                    .insert(format!("{full}.{}", method.name()), name.clone());
            }
            self.symbols.insert(full, name.clone());
        }
        for ext in &file.extension {
            self.extension(&name, ext);
        }
        let imports = file.dependency.clone();
        self.files
            .insert(name, (Bytes::from(file.encode_to_vec()), imports));
    }

    fn message(&mut self, file: &str, scope: &str, message: &DescriptorProto) {
        let full = qualify(scope, message.name());
        for nested in &message.nested_type {
            self.message(file, &full, nested);
        }
        for e in &message.enum_type {
            self.symbols
                .insert(qualify(&full, e.name()), file.to_owned());
        }
        for ext in &message.extension {
            self.extension(file, ext);
        }
        self.symbols.insert(full, file.to_owned());
    }

    fn extension(&mut self, file: &str, ext: &prost_types::FieldDescriptorProto) {
        let extendee = ext.extendee().trim_start_matches('.').to_owned();
        self.extensions
            .insert((extendee, ext.number()), file.to_owned());
    }

    /// `file` and every file it imports, transitively, each once.
    fn with_imports(&self, file: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![file.to_owned()];
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some((bytes, imports)) = self.files.get(&name) {
                out.push(bytes.clone());
                todo.extend(imports.iter().rev().cloned());
            }
        }
        out
    }
}

/// `grpc.reflection.v1.ServerReflectionRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionRequest {
    #[prost(string, tag = "1")]
    host: String,
    #[prost(oneof = "Request", tags = "3, 4, 5, 6, 7")]
    request: Option<Request>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Request {
    #[prost(string, tag = "3")]
    FileByFilename(String),
    #[prost(string, tag = "4")]
    FileContainingSymbol(String),
    #[prost(message, tag = "5")]
    FileContainingExtension(ExtensionRequest),
    #[prost(string, tag = "6")]
    AllExtensionNumbersOfType(String),
    #[prost(string, tag = "7")]
    ListServices(String),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExtensionRequest {
    #[prost(string, tag = "1")]
    containing_type: String,
    #[prost(int32, tag = "2")]
    extension_number: i32,
}

/// `grpc.reflection.v1.ServerReflectionResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionResponse {
    #[prost(string, tag = "1")]
    valid_host: String,
    #[prost(message, optional, tag = "2")]
    original_request: Option<ReflectionRequest>,
    #[prost(oneof = "Answer", tags = "4, 5, 6, 7")]
    answer: Option<Answer>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Answer {
    #[prost(message, tag = "4")]
    Files(FileDescriptorResponse),
    #[prost(message, tag = "5")]
    ExtensionNumbers(ExtensionNumberResponse),
    #[prost(message, tag = "6")]
    Services(ListServiceResponse),
    #[prost(message, tag = "7")]
    Failure(ErrorResponse),
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileDescriptorResponse {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    file_descriptor_proto: Vec<Bytes>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExtensionNumberResponse {
    #[prost(string, tag = "1")]
    base_type_name: String,
    #[prost(int32, repeated, tag = "2")]
    extension_number: Vec<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ServiceResponse {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ErrorResponse {
    #[prost(int32, tag = "1")]
    error_code: i32,
    #[prost(string, tag = "2")]
    error_message: String,
}

/// The gRPC services this server answers, by name.
fn services(shared: &Shared) -> Vec<String> {
    let mut names: BTreeSet<String> = shared
        .grpc
        .keys()
        .filter_map(|k| k.split_once('/').map(|(s, _)| s.to_owned()))
        .collect();
    names.insert("grpc.health.v1.Health".to_owned());
    names.insert("grpc.reflection.v1.ServerReflection".to_owned());
    names.insert("grpc.reflection.v1alpha.ServerReflection".to_owned());
    names.into_iter().collect()
}

fn not_found(what: String) -> Answer {
    Answer::Failure(ErrorResponse {
        error_code: status::NOT_FOUND as i32,
        error_message: format!(
            "{what}: this server has no descriptor for it (give the service its descriptors with Service::file_descriptor_set)"
        ),
    })
}

/// The answer to one reflection request.
fn answer(shared: &Shared, request: &Request) -> Answer {
    let index = &shared.descriptors.0;
    let files = |file: Option<&String>, what: String| match file {
        Some(file) => Answer::Files(FileDescriptorResponse {
            file_descriptor_proto: index.with_imports(file),
        }),
        None => not_found(what),
    };
    match request {
        Request::ListServices(_) => Answer::Services(ListServiceResponse {
            service: services(shared)
                .into_iter()
                .map(|name| ServiceResponse { name })
                .collect(),
        }),
        Request::FileByFilename(name) => files(
            index.files.contains_key(name).then_some(name),
            format!("file {name:?}"),
        ),
        Request::FileContainingSymbol(symbol) => {
            let symbol = symbol.trim_start_matches('.');
            files(index.symbols.get(symbol), format!("symbol {symbol:?}"))
        }
        Request::FileContainingExtension(ext) => {
            let ty = ext.containing_type.trim_start_matches('.').to_owned();
            let key = (ty, ext.extension_number);
            files(
                index.extensions.get(&key),
                format!("extension {} of {}", key.1, key.0),
            )
        }
        Request::AllExtensionNumbersOfType(ty) => {
            let ty = ty.trim_start_matches('.');
            if !index.symbols.contains_key(ty) {
                return not_found(format!("type {ty:?}"));
            }
            let mut numbers: Vec<i32> = index
                .extensions
                .keys()
                .filter(|(t, _)| t == ty)
                .map(|(_, n)| *n)
                .collect();
            numbers.sort_unstable();
            Answer::ExtensionNumbers(ExtensionNumberResponse {
                base_type_name: ty.to_owned(),
                extension_number: numbers,
            })
        }
    }
}

/// `ServerReflectionInfo`: one answer per request, until the client
/// half-closes.
pub(super) fn serve(shared: &Arc<Shared>, body: Body, encoding: frame::Encoding) -> Response {
    let out = Arc::new(Out::default());
    let driver = out.clone();
    let shared = shared.clone();
    let mut source = Source::new(body, shared.max_body_size, encoding);
    tokio::spawn(async move {
        let result = loop {
            let next = tokio::select! {
                next = std::future::poll_fn(|cx| source.poll_message(cx)) => next,
                () = driver.gone() => return,
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            };
            let request = match ReflectionRequest::decode(message.as_ref()) {
                Ok(r) => r,
                Err(e) => {
                    break Err(Error::bad_request(format!(
                        "decoding ServerReflectionRequest: {e}"
                    )));
                }
            };
            let Some(asked) = &request.request else {
                break Err(Error::bad_request(
                    "a ServerReflectionRequest must ask something",
                ));
            };
            let answer = answer(&shared, asked);
            let reply = ReflectionResponse {
                valid_host: request.host.clone(),
                original_request: Some(request),
                answer: Some(answer),
            };
            driver.push(&frame::encode(&reply.encode_to_vec()));
        };
        driver.finish(trailers(&result));
    });
    long(response(ContentType::Protobuf, GrpcBody::Stream(out)))
}
