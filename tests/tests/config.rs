//! Config: merge rules, explain, hot reload with real files, and the
//! remote source on real servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::config::{Config, ConfigErrorKind, Origin, Watched};
use serde::Deserialize;

/// How long a change may take to reach a watcher before the test fails:
/// generous, as the machine may be busy; the time taken is printed.
const BOUND: Duration = Duration::from_secs(10);

/// A directory of its own for one test, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("micro-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug, Deserialize, PartialEq)]
struct Greeter {
    greeting: String,
    #[serde(default)]
    rate_limit: u32,
}

/// Waits for `watched` to hold what `want` accepts; prints how long it took.
async fn until<T: std::fmt::Debug>(
    what: &str,
    watched: &mut Watched<T>,
    want: impl Fn(&T) -> bool,
) {
    let started = Instant::now();
    tokio::time::timeout(BOUND, async {
        while !want(&watched.get()) {
            watched.changed().await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{what}: no change within {BOUND:?}; now {:?}",
            watched.get()
        )
    });
    println!("{what}: reached the watcher in {:?}", started.elapsed());
}

/// Waits for an error on `errors` that `want` accepts.
async fn error_reported(
    what: &str,
    errors: &mut tokio::sync::broadcast::Receiver<micro::config::ConfigError>,
    want: impl Fn(&micro::config::ConfigError) -> bool,
) -> micro::config::ConfigError {
    let started = Instant::now();
    let e = tokio::time::timeout(BOUND, async {
        loop {
            match errors.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: no error reported within {BOUND:?}"));
    println!("{what}: reported in {:?}: {e}", started.elapsed());
    e
}

#[tokio::test]
async fn later_sources_win_even_with_false_zero_and_empty() {
    let dir = Dir::new("merge");
    let base = dir.write(
        "base.toml",
        "enabled = true\ncount = 5\nname = \"x\"\nhosts = [\"a\", \"b\"]\ngone = 1\n\n[db]\nurl = \"pg\"\npool = 4\n",
    );
    let over = dir.write(
        "over.yaml",
        "enabled: false\ncount: 0\nname: \"\"\nhosts: [c]\ngone: null\ndb:\n  pool: null\n  timeout: 3\n",
    );
    let config = Config::builder()
        .file(&base)
        .file(&over)
        .load()
        .await
        .unwrap();
    assert!(!config.get::<bool>("enabled").unwrap());
    assert_eq!(config.get::<u32>("count").unwrap(), 0);
    assert_eq!(config.get::<String>("name").unwrap(), "");
    assert_eq!(
        config.get::<Vec<String>>("hosts").unwrap(),
        ["c"],
        "arrays replace"
    );
    assert!(!config.contains("gone"), "null deletes");
    assert_eq!(
        config.redacted()["db"],
        serde_json::json!({"url": "pg", "timeout": 3}),
        "tables merge; a null inside deletes one key"
    );
    let missing = config.get::<u32>("gone").unwrap_err();
    assert_eq!(missing.kind(), ConfigErrorKind::Missing);
    assert_eq!(
        config.get_or("gone", 7u32).unwrap(),
        7,
        "a fallback for a missing key"
    );
    assert_eq!(
        config.get_or("count", 7u32).unwrap(),
        0,
        "no fallback for a set one"
    );
}

#[tokio::test]
async fn t_stays_a_string_and_text_is_typed_on_read() {
    let dir = Dir::new("types");
    let file = dir.write("c.yaml", "flag: \"t\"\nanswer: yes\nport: \"8080\"\n");
    let config = Config::builder()
        .file(&file)
        .env_from(
            "APP",
            [
                ("APP_MODE".into(), "t".into()),
                ("APP_PORT".into(), "9090".into()),
            ],
        )
        .load()
        .await
        .unwrap();
    assert_eq!(config.get::<String>("flag").unwrap(), "t");
    assert_eq!(
        config.get::<String>("answer").unwrap(),
        "yes",
        "YAML 1.2: yes is a string"
    );
    assert_eq!(
        config.get::<String>("mode").unwrap(),
        "t",
        "text read as a string stays one"
    );
    assert_eq!(
        config.get::<u16>("port").unwrap(),
        9090,
        "env text read as a number"
    );
    let err = config.get::<bool>("flag").unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Invalid);
    assert_eq!(err.path(), Some("flag"));
    let shown = err.to_string();
    assert!(shown.contains("\"flag\""), "{shown}");
    assert!(
        shown.contains(&format!("file {}:1", file.display())),
        "{shown}"
    );
    assert!(shown.contains("expected a boolean"), "{shown}");
    let err = config.get::<bool>("mode").unwrap_err().to_string();
    assert!(
        err.contains("env APP_MODE") && err.contains("expected a boolean"),
        "{err}"
    );
}

#[tokio::test]
async fn a_section_error_names_the_deepest_path_and_its_source() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Database {
        url: String,
        max_conns: u32,
    }
    let config = Config::builder()
        .set_default("database.url", "pg")
        .args(["--database.max_conns=many"])
        .load()
        .await
        .unwrap();
    let err = config.get::<Database>("database").unwrap_err();
    assert_eq!(err.path(), Some("database.max_conns"));
    assert_eq!(
        err.origin(),
        Some(&Origin::Flag {
            arg: "database.max_conns".into()
        })
    );
    let shown = err.to_string();
    assert!(
        shown.contains("flag --database.max_conns") && shown.contains("u32"),
        "{shown}"
    );
    assert_eq!(micro::Error::from(err).code(), 400);
}

#[tokio::test]
async fn explain_names_each_kind_of_source() {
    let dir = Dir::new("explain");
    let toml = dir.write("a.toml", "# top\n[server]\nport = 80\nhost = \"h\"\n");
    let json = dir.write(
        "b.json",
        "{\n  \"server\": {\n    \"host\": \"j\"\n  },\n  \"name\": \"n\"\n}\n",
    );
    let store: Arc<dyn micro::store::Store> = Arc::new(micro::store::MemoryStore::new());
    let scoped = micro::store::Scoped::new(store.clone(), "config").unwrap();
    scoped.put("app/remote", &"r").await.unwrap();
    let config = Config::builder()
        .set_default("server.timeout", 30)
        .file(&toml)
        .file(&json)
        .env_from("APP", [("APP_SERVER__TLS".into(), "on".into())])
        .args(["--server.debug"])
        .store(store, "config", "app/")
        .load()
        .await
        .unwrap();
    let explain = |p: &str| config.explain(p).unwrap().to_string();
    assert_eq!(explain("server.timeout"), "server.timeout: default");
    assert_eq!(
        explain("server.port"),
        format!("server.port: file {}:3", toml.display())
    );
    assert_eq!(
        explain("server.host"),
        format!(
            "server.host: file {}:3 (over file {}:4)",
            json.display(),
            toml.display()
        )
    );
    assert_eq!(explain("name"), format!("name: file {}:5", json.display()));
    assert_eq!(explain("server.tls"), "server.tls: env APP_SERVER__TLS");
    assert_eq!(explain("server.debug"), "server.debug: flag --server.debug");
    assert_eq!(
        explain("remote"),
        "remote: remote memory config key app/remote"
    );
    assert!(config.explain("nothing.here").is_none());
    assert!(config.get::<bool>("server.debug").unwrap());
}

#[tokio::test]
async fn secrets_are_redacted_when_printed() {
    let config = Config::builder()
        .set_default("db.password", "hunter2")
        .set_default("db.dsn", "postgres://u:pw@h/db")
        .set_default("db.host", "h")
        .secret("db.dsn")
        .load()
        .await
        .unwrap();
    let printed = config.to_string();
    assert!(
        !printed.contains("hunter2") && !printed.contains("pw@"),
        "{printed}"
    );
    assert!(printed.contains("db.host = \"h\""), "{printed}");
    assert!(!format!("{config:?}").contains("hunter2"));
    assert_eq!(config.redacted()["db"]["password"], "<redacted>");
    // Reading it is not printing it.
    let password: micro::config::Secret<String> = config.get("db.password").unwrap();
    assert_eq!(password.expose(), "hunter2");
    assert_eq!(format!("{password:?}"), "<redacted>");
}

#[tokio::test]
async fn variables_expand_in_files_and_an_unset_one_fails_the_load() {
    let dir = Dir::new("expand");
    // PATH and HOME are set in any test run; the other is not.
    let file = dir.write(
        "c.toml",
        "path = \"${PATH}\"\nport = \"${MICRO_CONFIG_TEST_PORT:-8081}\"\nliteral = \"$${PATH}\"\n",
    );
    let config = Config::builder().file(&file).load().await.unwrap();
    assert_eq!(
        config.get::<String>("path").unwrap(),
        std::env::var("PATH").unwrap()
    );
    assert_eq!(
        config.get::<u16>("port").unwrap(),
        8081,
        "an expanded value is typed on read"
    );
    assert_eq!(config.get::<String>("literal").unwrap(), "${PATH}");
    let bad = dir.write("bad.toml", "[db]\nurl = \"${MICRO_CONFIG_TEST_UNSET}\"\n");
    let err = Config::builder().file(&bad).load().await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("db.url") && shown.contains("MICRO_CONFIG_TEST_UNSET"),
        "{shown}"
    );
}

#[tokio::test]
async fn files_that_must_exist_and_files_that_may_not() {
    let dir = Dir::new("files");
    let err = Config::builder()
        .file(dir.path("missing.toml"))
        .load()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::Source);
    assert!(err.to_string().contains("missing.toml"), "{err}");
    let err = Config::builder()
        .file(dir.write("c.ini", "a=1"))
        .load()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown format"), "{err}");
    let config = Config::builder()
        .set_default("a", 1)
        .optional_file(dir.path("local.toml"))
        .load()
        .await
        .unwrap();
    assert_eq!(config.get::<u8>("a").unwrap(), 1);
    let err = Config::builder()
        .file(dir.write("broken.json", "{\"a\": }"))
        .load()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[tokio::test]
async fn environment_variables_of_a_real_process() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_config_env"))
        .env("APP_DATABASE__MAX_CONNS", "5")
        .env("APP_LOG_LEVEL", "debug")
        .env("APP_SERVER__PORT", "7")
        .env("APPLE", "not ours")
        .arg("--server.port=8")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let tree: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(
        tree,
        serde_json::json!({"database": {"max_conns": "5"}, "log_level": "debug", "server": {"port": "8"}})
    );
    let rest: Vec<&str> = lines.collect();
    assert_eq!(
        rest,
        [
            "database.max_conns: env APP_DATABASE__MAX_CONNS (over default)",
            "log_level: env APP_LOG_LEVEL",
            "server.port: flag --server.port (over env APP_SERVER__PORT)",
            "max_conns 5",
        ]
    );
}

/// Loads a config of `file`, with a watched `greeter` section that must
/// have a non-empty greeting.
async fn watched(file: &Path) -> (Config, Watched<Greeter>) {
    let config = Config::builder().file(file).load().await.unwrap();
    let greeter = config
        .watch_validated("greeter", |g: &Greeter| {
            if g.greeting.is_empty() {
                Err("greeting must not be empty")
            } else {
                Ok(())
            }
        })
        .unwrap();
    (config, greeter)
}

#[tokio::test]
async fn a_file_rewritten_in_place_reaches_the_watcher() {
    let dir = Dir::new("in-place");
    let file = dir.write("c.toml", "[greeter]\ngreeting = \"one\"\n");
    let (_config, mut greeter) = watched(&file).await;
    assert_eq!(greeter.get().greeting, "one");
    std::fs::write(&file, "[greeter]\ngreeting = \"two\"\nrate_limit = 3\n").unwrap();
    until("rewrite in place", &mut greeter, |g| g.greeting == "two").await;
    assert_eq!(greeter.get().rate_limit, 3);
}

#[tokio::test]
async fn a_file_replaced_by_rename_reaches_the_watcher() {
    let dir = Dir::new("rename");
    let file = dir.write("c.yaml", "greeter:\n  greeting: one\n");
    let (_config, mut greeter) = watched(&file).await;
    // As editors save: a new file beside it, renamed over it.
    let tmp = dir.write(".c.yaml.swp", "greeter:\n  greeting: two\n");
    std::fs::rename(&tmp, &file).unwrap();
    until("atomic rename", &mut greeter, |g| g.greeting == "two").await;
    let tmp = dir.write(".c.yaml.swp", "greeter:\n  greeting: three\n");
    std::fs::rename(&tmp, &file).unwrap();
    until("a second rename", &mut greeter, |g| g.greeting == "three").await;
}

#[tokio::test]
async fn a_configmap_symlink_swap_reaches_the_watcher() {
    use std::os::unix::fs::symlink;
    // As the kubelet lays out a ConfigMap volume: the file is a link into
    // `..data`, itself a link to a timestamped directory, swapped by
    // renaming a new link over it.
    let dir = Dir::new("configmap");
    std::fs::create_dir(dir.path("..2026_01")).unwrap();
    std::fs::write(
        dir.path("..2026_01/app.json"),
        r#"{"greeter": {"greeting": "one"}}"#,
    )
    .unwrap();
    symlink("..2026_01", dir.path("..data")).unwrap();
    symlink("..data/app.json", dir.path("app.json")).unwrap();
    let (_config, mut greeter) = watched(&dir.path("app.json")).await;
    assert_eq!(greeter.get().greeting, "one");
    std::fs::create_dir(dir.path("..2026_02")).unwrap();
    std::fs::write(
        dir.path("..2026_02/app.json"),
        r#"{"greeter": {"greeting": "two"}}"#,
    )
    .unwrap();
    symlink("..2026_02", dir.path("..data_tmp")).unwrap();
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
    std::fs::remove_dir_all(dir.path("..2026_01")).unwrap();
    until("ConfigMap ..data swap", &mut greeter, |g| {
        g.greeting == "two"
    })
    .await;
}

#[tokio::test]
async fn a_broken_file_keeps_the_last_good_value_and_says_why() {
    let dir = Dir::new("broken");
    let file = dir.write("c.toml", "[greeter]\ngreeting = \"good\"\n");
    let (config, mut greeter) = watched(&file).await;
    let mut errors = config.errors();
    std::fs::write(&file, "[greeter\ngreeting = \"half-saved").unwrap();
    let err = error_reported("a broken file", &mut errors, |e| {
        e.kind() == ConfigErrorKind::Source
    })
    .await;
    assert!(err.to_string().contains("c.toml"), "{err}");
    assert_eq!(greeter.get().greeting, "good", "the last good value stays");
    assert_eq!(config.get::<String>("greeter.greeting").unwrap(), "good");
    assert!(config.last_error().is_some());
    std::fs::write(&file, "[greeter]\ngreeting = \"fixed\"\n").unwrap();
    until("the file fixed", &mut greeter, |g| g.greeting == "fixed").await;
}

#[tokio::test]
async fn a_valid_file_that_fails_validation_is_kept_out() {
    let dir = Dir::new("invalid");
    let file = dir.write("c.yaml", "greeter:\n  greeting: good\n");
    let (config, mut greeter) = watched(&file).await;
    let mut errors = config.errors();
    // Valid YAML, refused by the validation.
    std::fs::write(&file, "greeter:\n  greeting: \"\"\n").unwrap();
    let err = error_reported("a refused value", &mut errors, |e| {
        e.kind() == ConfigErrorKind::Rejected
    })
    .await;
    assert!(
        err.to_string().contains("greeting must not be empty"),
        "{err}"
    );
    assert_eq!(greeter.get().greeting, "good");
    assert!(greeter.last_error().is_some());
    // Valid YAML of the wrong type: refused by the deserializer.
    std::fs::write(&file, "greeter:\n  greeting: [1, 2]\n").unwrap();
    let err = error_reported("a value of the wrong type", &mut errors, |e| {
        e.kind() == ConfigErrorKind::Invalid
    })
    .await;
    assert_eq!(err.path(), Some("greeter.greeting"));
    assert_eq!(greeter.get().greeting, "good");
    std::fs::write(&file, "greeter:\n  greeting: better\n").unwrap();
    until("a good value again", &mut greeter, |g| {
        g.greeting == "better"
    })
    .await;
    assert!(greeter.last_error().is_none());
}

#[tokio::test]
async fn micro_settings_come_from_the_config() {
    let dir = Dir::new("micro");
    let port = micro_tests::free_port();
    let file = dir.write(
        "c.toml",
        &format!("[micro]\nregistry = \"memory\"\nbroker = \"memory\"\nserver_address = \"127.0.0.1:{port}\"\n"),
    );
    let config = Config::builder().file(&file).load().await.unwrap();
    let backends = micro::Backends::from_config(&config);
    assert_eq!(backends.registry().name(), "memory");
    assert_eq!(backends.broker().name(), "memory");
    let service = micro::Service::new("configured")
        .config(&config)
        .start()
        .await
        .unwrap();
    assert_eq!(service.local_addr().port(), port);
    service.stop().await.unwrap();
}

/// Values in `store` under `prefix` reach a watcher; a value that does
/// not decode keeps the last good one.
async fn remote_changes_reach_a_watcher(store: Arc<dyn micro::store::Store>, scope: &str) {
    let scoped = micro::store::Scoped::new(store.clone(), scope).unwrap();
    scoped.put("svc/greeter/greeting", &"one").await.unwrap();
    scoped.put("svc/greeter.rate_limit", &2).await.unwrap();
    scoped
        .put("other/greeter/greeting", &"not ours")
        .await
        .unwrap();
    let config = Config::builder()
        .set_default("greeter.greeting", "default")
        .store(store.clone(), scope, "svc/")
        .load()
        .await
        .unwrap();
    let mut greeter: Watched<Greeter> = config.watch("greeter").unwrap();
    assert_eq!(
        *greeter.get(),
        Greeter {
            greeting: "one".into(),
            rate_limit: 2
        }
    );
    let explained = config.explain("greeter.greeting").unwrap();
    assert!(
        matches!(&explained.origin, Origin::Remote { key, .. } if key == "svc/greeter/greeting"),
        "{explained}"
    );
    scoped.put("svc/greeter/greeting", &"two").await.unwrap();
    until(
        &format!("a {} key changed", store.name()),
        &mut greeter,
        |g| g.greeting == "two",
    )
    .await;
    scoped.delete("svc/greeter/greeting").await.unwrap();
    until(
        &format!("a {} key deleted", store.name()),
        &mut greeter,
        |g| g.greeting == "default",
    )
    .await;
    let _ = scoped.delete("svc/greeter.rate_limit").await;
    let _ = scoped.delete("other/greeter/greeting").await;
}

#[tokio::test]
async fn the_memory_store_as_a_remote_source() {
    remote_changes_reach_a_watcher(Arc::new(micro::store::MemoryStore::new()), "config").await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_nats_kv),
    ignore = "needs a NATS server with JetStream KV (2.10+): set MICRO_TEST_NATS_KV=nats://127.0.0.1:4223"
)]
async fn nats_kv_as_a_remote_source() {
    let url = std::env::var("MICRO_TEST_NATS_KV").expect("MICRO_TEST_NATS_KV names the server");
    let scope = format!("config-test-{}", std::process::id());
    remote_changes_reach_a_watcher(Arc::new(micro::store::NatsKvStore::new(url)), &scope).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_nats_kv),
    ignore = "needs a NATS server with JetStream KV (2.10+): set MICRO_TEST_NATS_KV=nats://127.0.0.1:4223"
)]
async fn the_remote_source_is_chosen_by_micro_config() {
    let url = std::env::var("MICRO_TEST_NATS_KV").expect("MICRO_TEST_NATS_KV names the server");
    let prefix = format!("chosen-{}/", std::process::id());
    let store: Arc<dyn micro::store::Store> = Arc::new(micro::store::NatsKvStore::new(url.clone()));
    let scoped = micro::store::Scoped::new(store, "config").unwrap();
    scoped
        .put(&format!("{prefix}greeter/greeting"), &"from nats")
        .await
        .unwrap();
    // The store named by keys of the sources before it.
    let config = Config::builder()
        .set_default("micro.config", "nats")
        .set_default("micro.config_address", url)
        .remote(&prefix)
        .load()
        .await
        .unwrap();
    assert_eq!(
        config.get::<String>("greeter.greeting").unwrap(),
        "from nats"
    );
    assert!(matches!(
        config.explain("greeter.greeting").unwrap().origin,
        Origin::Remote { .. }
    ));
    scoped
        .delete(&format!("{prefix}greeter/greeting"))
        .await
        .unwrap();
    // Without MICRO_CONFIG, no remote source.
    assert!(
        std::env::var_os("MICRO_CONFIG").is_none(),
        "unset MICRO_CONFIG to run this test"
    );
    let config = Config::builder().remote(&prefix).load().await.unwrap();
    assert!(!config.contains("greeter"));
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_redis),
    ignore = "needs a Redis server: set MICRO_TEST_REDIS=redis://127.0.0.1:6379"
)]
async fn redis_as_a_remote_source() {
    let url = std::env::var("MICRO_TEST_REDIS").expect("MICRO_TEST_REDIS names the server");
    let scope = format!("config-test-{}", std::process::id());
    let store = micro::store::RedisStore::new(&url).unwrap();
    remote_changes_reach_a_watcher(Arc::new(store), &scope).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(micro_test_postgres),
    ignore = "needs a Postgres server: set MICRO_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/test"
)]
async fn postgres_as_a_remote_source() {
    let url = std::env::var("MICRO_TEST_POSTGRES").expect("MICRO_TEST_POSTGRES names the server");
    let scope = format!("config-test-{}", std::process::id());
    let store = micro::store::PostgresStore::new(&url).unwrap();
    remote_changes_reach_a_watcher(Arc::new(store), &scope).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread")]
async fn a_nats_that_goes_away_keeps_the_last_value_and_says_so() {
    let dir = Dir::new("nats-away");
    let (mut server, url) = micro_tests::private_nats_server(&dir.path("data")).await;
    let store: Arc<dyn micro::store::Store> = Arc::new(micro::store::NatsKvStore::new(url));
    let scoped = micro::store::Scoped::new(store.clone(), "config").unwrap();
    scoped.put("greeter/greeting", &"kept").await.unwrap();
    let config = Config::builder()
        .store(store, "config", "")
        .load()
        .await
        .unwrap();
    let greeter: Watched<Greeter> = config.watch("greeter").unwrap();
    let mut errors = config.errors();
    server.kill().unwrap();
    server.wait().unwrap();
    let err = error_reported("NATS gone", &mut errors, |e| {
        e.kind() == ConfigErrorKind::Unavailable
    })
    .await;
    assert!(err.to_string().contains("keeping the last values"), "{err}");
    assert_eq!(greeter.get().greeting, "kept");
    assert_eq!(config.get::<String>("greeter.greeting").unwrap(), "kept");
    assert_eq!(micro::Error::from(err).code(), 503);
}
