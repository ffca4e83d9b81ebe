//! TLS and mutual TLS with certificates the tests make: curl and the typed
//! client over HTTPS and WSS, and clients without a certificate refused.
#![cfg(feature = "tls")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use micro::auth::{Auth, Rule};
use micro::tls::{ClientTls, ServerTls};
use micro::{Backends, Client, Context, Result, Service, ServiceHandle, handler, service};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

struct Greeter;

#[service]
impl Greeter {
    #[handler]
    async fn hello(&self, ctx: Context, name: String) -> Result<String> {
        let by = ctx
            .account()
            .map(|a| a.id.clone())
            .unwrap_or_else(|| "nobody".into());
        Ok(format!("hello {name}, from {by}"))
    }

    #[handler]
    async fn echo(&self, mut stream: micro::Stream<String, String>) -> Result<()> {
        while let Some(text) = stream.recv().await? {
            stream.send(format!("echo {text}")).await?;
        }
        Ok(())
    }
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate for `billing`, as PEM files in a directory of their own.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("micro-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "micro test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let write = |file: &str, text: String| std::fs::write(dir.join(file), text).unwrap();
        write("ca.pem", ca.pem());
        let issue = |names: Vec<String>, cn: &str, file: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            write(&format!("{file}.pem"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        };
        issue(
            vec!["127.0.0.1".into(), "localhost".into()],
            "greeter",
            "server",
        );
        issue(vec!["billing.internal".into()], "billing", "client");
        // A CA nobody trusts, for a client certificate that must be refused.
        let rogue_key = KeyPair::generate().unwrap();
        let mut rogue = CertificateParams::new(vec!["rogue".to_owned()]).unwrap();
        rogue.distinguished_name.push(DnType::CommonName, "rogue");
        let rogue = rogue.self_signed(&rogue_key).unwrap();
        write("rogue.pem", rogue.pem());
        write("rogue.key", rogue_key.serialize_pem());
        Self { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn serve(tls: ServerTls, auth: Option<Auth>, backends: &Backends) -> ServiceHandle {
    let mut service = Service::new("greeter")
        .address("127.0.0.1:0")
        .backends(backends)
        .tls(tls)
        .handle(Greeter);
    if let Some(auth) = auth {
        service = service.auth(auth);
    }
    service.start().await.unwrap()
}

/// curl, a client that is not micro; its exit status and output.
fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl runs (apt install curl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn hello_args(url: &str) -> Vec<&str> {
    vec![
        "-H",
        "Content-Type: application/json",
        "-H",
        "Micro-Endpoint: Greeter.Hello",
        "-d",
        "\"curl\"",
        url,
    ]
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_wss_with_curl_and_the_typed_client() {
    let pki = Pki::new("plain");
    let backends = Backends::memory();
    let tls = ServerTls::from_pem_files(pki.path("server.pem"), pki.path("server.key")).unwrap();
    let service = serve(tls, None, &backends).await;
    let url = format!("https://127.0.0.1:{}/", service.local_addr().port());

    let ca = pki.path("ca.pem");
    let mut args = vec!["--cacert", s(&ca)];
    args.extend(hello_args(&url));
    let (ok, out) = curl(&args);
    assert!(ok, "{out}");
    assert_eq!(out, "\"hello curl, from nobody\"");
    // Without the CA, curl does not trust the server.
    let (ok, out) = curl(&hello_args(&url));
    assert!(!ok, "{out}");
    // Plain HTTP to the TLS port is no call.
    let plain = format!("http://127.0.0.1:{}/", service.local_addr().port());
    let (ok, out) = curl(&hello_args(&plain));
    assert!(!ok || !out.contains("hello"), "{out}");

    let client = Client::builder()
        .backends(&backends)
        .tls(&ClientTls::ca_file(&ca).unwrap())
        .unwrap()
        .build();
    let greeter = GreeterClient::new("greeter", client);
    assert_eq!(
        greeter.hello("typed".into()).await.unwrap(),
        "hello typed, from nobody"
    );
    // A stream over WSS.
    let mut stream = greeter.echo().await.unwrap();
    stream.send("over wss".to_owned()).await.unwrap();
    assert_eq!(
        stream.recv().await.unwrap().as_deref(),
        Some("echo over wss")
    );
    stream.close_send().await.unwrap();
    assert_eq!(stream.recv().await.unwrap(), None);
    // A client that trusts only another CA refuses the server.
    let untrusting = Client::builder()
        .backends(&backends)
        .tls(&ClientTls::ca_file(pki.path("rogue.pem")).unwrap())
        .unwrap()
        .build();
    let err = GreeterClient::new("greeter", untrusting)
        .hello("x".into())
        .await
        .unwrap_err();
    assert_eq!(err.code(), 503, "{err}");
    assert!(err.detail().contains("certificate"), "{err}");
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_refuses_clients_without_a_certificate_and_names_those_with_one() {
    let pki = Pki::new("mutual");
    let backends = Backends::memory();
    let tls = ServerTls::client_ca(
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    )
    .unwrap();
    // The certificate's name is an identity the rules see.
    let auth = Auth::issuer("greeter")
        .rules(vec![Rule::grant("Greeter.*", "mtls:billing")])
        .build()
        .unwrap();
    let service = serve(tls, Some(auth), &backends).await;
    let url = format!("https://127.0.0.1:{}/", service.local_addr().port());
    let ca = pki.path("ca.pem");

    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let mut args = vec!["--cacert", s(&ca), "--cert", s(&cert), "--key", s(&key)];
    args.extend(hello_args(&url));
    let (ok, out) = curl(&args);
    assert!(ok, "{out}");
    assert_eq!(out, "\"hello curl, from billing\"");
    let mut args = vec!["--cacert", s(&ca)];
    args.extend(hello_args(&url));
    let (ok, out) = curl(&args);
    assert!(
        !ok,
        "no client certificate: refused in the handshake: {out}"
    );
    let (rogue_cert, rogue_key) = (pki.path("rogue.pem"), pki.path("rogue.key"));
    let mut args = vec![
        "--cacert",
        s(&ca),
        "--cert",
        s(&rogue_cert),
        "--key",
        s(&rogue_key),
    ];
    args.extend(hello_args(&url));
    let (ok, out) = curl(&args);
    assert!(!ok, "a certificate of another CA: refused: {out}");

    let with_cert = ClientTls::ca_file(&ca)
        .unwrap()
        .with_identity(&cert, &key)
        .unwrap();
    let client = Client::builder()
        .backends(&backends)
        .tls(&with_cert)
        .unwrap()
        .build();
    let greeter = GreeterClient::new("greeter", client);
    assert_eq!(
        greeter.hello("typed".into()).await.unwrap(),
        "hello typed, from billing"
    );
    let without = Client::builder()
        .backends(&backends)
        .tls(&ClientTls::ca_file(&ca).unwrap())
        .unwrap()
        .build();
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        GreeterClient::new("greeter", without).hello("x".into()),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert!(matches!(err.code(), 502 | 503), "{err}");
    service.stop().await.unwrap();
}

/// gRPC over TLS: h2 chosen by ALPN on the service's one port.
#[cfg(feature = "protobuf")]
mod grpc {
    use super::{Pki, curl, s};
    use micro::tls::ServerTls;
    use micro::{Result, handler, service};
    use prost::Message as _;

    /// `message Text { string text = 1; }`
    #[derive(Clone, PartialEq, prost::Message)]
    struct Text {
        #[prost(string, tag = "1")]
        text: String,
    }

    struct Secure;

    #[service(protobuf, package = "tls.v1")]
    impl Secure {
        #[handler]
        async fn echo(&self, req: Text) -> Result<Text> {
            Ok(Text {
                text: format!("echo {}", req.text),
            })
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn grpc_over_tls_with_curl() {
        let pki = Pki::new("grpc");
        let tls =
            ServerTls::from_pem_files(pki.path("server.pem"), pki.path("server.key")).unwrap();
        let service = micro::Service::new("secure")
            .address("127.0.0.1:0")
            .backends(&micro::Backends::memory())
            .tls(tls)
            .handle(Secure)
            .start()
            .await
            .unwrap();
        let message = Text { text: "hi".into() }.encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(&message);
        let request = pki.path("request.bin");
        let reply = pki.path("reply.bin");
        std::fs::write(&request, &frame).unwrap();
        let url = format!(
            "https://localhost:{}/tls.v1.Secure/Echo",
            service.local_addr().port()
        );
        let (ok, out) = curl(&[
            "--http2",
            "--cacert",
            s(&pki.path("ca.pem")),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            &format!("@{}", s(&request)),
            "-o",
            s(&reply),
            "-w",
            "%{http_version} %{content_type}",
            &url,
        ]);
        assert!(ok, "{out}");
        assert_eq!(out, "2 application/grpc", "HTTP/2 by ALPN");
        let body = std::fs::read(&reply).unwrap();
        assert_eq!(body[0], 0, "an uncompressed message");
        let text = Text::decode(&body[5..]).unwrap();
        assert_eq!(text.text, "echo hi");
        service.stop().await.unwrap();
    }
}
