//! The token cache shared by plugin processes, shown with the ECR backend against a
//! loopback fake that counts `GetAuthorizationToken` calls: single flight across 64
//! concurrent processes, a killed fetcher, unsound entries, unusable directories, and
//! identities that must not share a token.

use crate::common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{API_VERSIONS, Plugin, request};
use icp_test_kit::aws::counting::{FakeAws, password};

const ACCOUNT: &str = "111122223333";

fn registry(dual_stack: bool) -> String {
    if dual_stack {
        format!("{ACCOUNT}.dkr-ecr.us-east-1.on.aws")
    } else {
        format!("{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com")
    }
}

/// The binary set up for ECR against `fake` with static keys, caching in `cache`
/// (`None`: `--no-cache`).
fn ecr(fake: &FakeAws, cache: Option<&Path>, args: &[&str]) -> Plugin {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    match cache {
        Some(dir) => all.extend(["--cache-dir".into(), dir.as_os_str().to_owned()]),
        None => all.push("--no-cache".into()),
    }
    Plugin::new(all)
        .env("AWS_ACCESS_KEY_ID", "AKIAFAKECACHETEST")
        .env("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
        .env("AWS_ENDPOINT_URL_ECR", &fake.url)
        .env("AWS_ENDPOINT_URL_STS", &fake.url)
}

/// Runs `count` plugin processes at once, alternating between two registry hosts of one
/// account and region, and returns each one's (registry, stdout, exit code).
fn concurrent(fake: &FakeAws, cache: Option<&Path>, count: usize) -> Vec<(String, String, i32)> {
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let registry = registry(i % 2 == 1);
            let plugin = ecr(fake, cache, &[])
                .stdin(request(API_VERSIONS[i % 3], &format!("{registry}/app-{i}")));
            std::thread::spawn(move || {
                let run = plugin.run();
                (registry, run.stdout, run.code)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn sixty_four_concurrent_cold_invocations_make_one_upstream_call() {
    let fake = FakeAws::start(Duration::from_millis(700), 0);
    let cache = tempfile::tempdir().unwrap();
    let results = concurrent(&fake, Some(cache.path()), 64);
    for (registry, stdout, code) in &results {
        assert_eq!(*code, 0, "{stdout}");
        let response: serde_json::Value = serde_json::from_str(stdout).unwrap();
        let auth = response["auth"].as_object().unwrap();
        assert_eq!(auth.keys().collect::<Vec<_>>(), [registry]);
        assert_eq!(auth[registry]["username"], "AWS");
        assert_eq!(auth[registry]["password"], password(1));
    }
    assert_eq!(
        fake.ecr_calls(),
        1,
        "one GetAuthorizationToken for 64 processes"
    );
}

#[test]
fn without_the_cache_every_invocation_calls_upstream() {
    let fake = FakeAws::start(Duration::from_millis(100), 0);
    let results = concurrent(&fake, None, 64);
    assert!(results.iter().all(|(_, _, code)| *code == 0));
    assert_eq!(fake.ecr_calls(), 64);
}

#[test]
fn a_fetcher_killed_while_holding_the_lock_does_not_wedge_the_others() {
    let fake = FakeAws::start(Duration::ZERO, 1);
    let cache = tempfile::tempdir().unwrap();
    let image = format!("{}/app", registry(false));
    let spawn = |verbose: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_image-credential-provider"));
        command
            .args(["get", &image, "--cache-dir", cache.path().to_str().unwrap()])
            .args(verbose.then_some("-v"))
            .env_clear()
            .env("HOME", cache.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "AKIAFAKECACHETEST")
            .env("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
            .env("AWS_ENDPOINT_URL_ECR", &fake.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().unwrap()
    };
    let mut holder = spawn(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    while fake.ecr_calls() < 1 {
        assert!(
            Instant::now() < deadline,
            "the first process never called upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The holder is inside its fetch, holding the lock; a second process queues behind it.
    let waiter = spawn(true);
    std::thread::sleep(Duration::from_millis(300));
    holder.kill().unwrap();
    holder.wait().unwrap();
    let output = waiter.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["auth"][registry(false)]["password"], password(2));
    assert!(
        !stderr.contains("held the token lock"),
        "the waiter waited out the lock instead of getting it: {stderr}"
    );
    assert_eq!(fake.ecr_calls(), 2);
}

/// The one entry file in `cache`: `<32 hex digits>.json`.
fn entry(cache: &Path) -> PathBuf {
    let entries: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.strip_suffix(".json")
                .is_some_and(|stem| stem.len() == 32 && stem.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().unwrap()
}

#[test]
fn unsound_entries_are_misses_and_get_replaced() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("tokens");
    let get = || {
        let run = ecr(
            &fake,
            Some(&dir),
            &["get", &format!("{}/app", registry(false))],
        )
        .run();
        let response = run.json();
        let path = entry(&dir);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.is_file()
                && meta.mode() & 0o777 == 0o600
                && meta.uid() == std::fs::metadata(&dir).unwrap().uid()
        );
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        (
            response["auth"][registry(false)]["password"]
                .as_str()
                .unwrap()
                .to_owned(),
            path,
        )
    };
    let (first, path) = get();
    assert_eq!(
        (first.as_str(), fake.ecr_calls()),
        (password(1).as_str(), 1)
    );
    assert_eq!(get().0, password(1), "a sound entry is a hit");
    assert_eq!(fake.ecr_calls(), 1);

    let mut calls = 1;
    let mut expect_miss = |what: &str, spoil: &dyn Fn(&Path)| {
        spoil(&path);
        let (password_now, _) = get();
        calls += 1;
        assert_eq!(fake.ecr_calls(), calls, "{what} entry should be a miss");
        assert_eq!(password_now, password(calls), "{what}");
    };
    expect_miss("corrupt", &|p| {
        std::fs::write(p, b"{\"format\":1,\"backend\":").unwrap()
    });
    expect_miss("truncated", &|p| {
        let content = std::fs::read(p).unwrap();
        std::fs::write(p, &content[..content.len() - 2]).unwrap();
    });
    expect_miss("world-readable", &|p| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap()
    });
    expect_miss("expired", &|p| {
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        value["expiresAt"] = serde_json::json!(1_000_000_000u64);
        std::fs::write(p, value.to_string()).unwrap();
    });
    let elsewhere = cache.path().join("planted.json");
    expect_miss("symlinked", &|p| {
        std::fs::rename(p, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, p).unwrap();
    });
    assert!(
        running_as_root(),
        "the wrongly-owned case needs root to chown (CI runs as root)"
    );
    expect_miss("wrongly-owned", &|p| {
        std::os::unix::fs::chown(p, Some(4242), Some(4242)).unwrap()
    });
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn an_unusable_cache_directory_still_gets_an_answer() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let image = format!("{}/app", registry(false));
    for dir in ["/proc/self/no-cache-here", "/dev/null/cache"] {
        let run = ecr(&fake, Some(Path::new(dir)), &["get", &image, "-v"]).run();
        assert_eq!(
            run.json()["auth"][registry(false)]["password"],
            password(fake.ecr_calls())
        );
        assert!(
            run.stderr.contains("token cache unusable"),
            "{}",
            run.stderr
        );
    }
    let missing = tempfile::tempdir().unwrap();
    let nested = missing.path().join("a/b/tokens");
    ecr(&fake, Some(&nested), &["get", &image]).run().json();
    assert_eq!(std::fs::metadata(&nested).unwrap().mode() & 0o777, 0o700);
    entry(&nested);
}

#[test]
fn different_identities_never_share_an_entry() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let cache = tempfile::tempdir().unwrap();
    let image = format!("{}/app", registry(false));
    let rules = |role: &str| {
        let path = cache.path().join(format!("{role}.yaml"));
        std::fs::write(
            &path,
            format!("rules:\n- matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n  provider: ecr\n  ecr: {{roleArn: \"arn:aws:iam::{ACCOUNT}:role/{role}\"}}\n"),
        )
        .unwrap();
        path
    };
    let tokens = cache.path().join("tokens");
    let by_role = |role: &str| {
        let config = rules(role);
        ecr(
            &fake,
            Some(&tokens),
            &["get", &image, "--config", config.to_str().unwrap()],
        )
        .run()
        .json();
    };
    by_role("puller-a");
    by_role("puller-b");
    by_role("puller-a");
    assert_eq!(
        (fake.ecr_calls(), fake.sts_calls()),
        (2, 2),
        "two roles, two tokens; the third call is a hit"
    );

    let token_file = |name: &str| {
        let path = cache.path().join(name);
        std::fs::write(&path, "header.payload.signature").unwrap();
        path
    };
    let (file_a, file_b) = (token_file("token-a"), token_file("token-b"));
    let by_web_identity = |file: &Path| {
        Plugin::new(["get", &image, "--cache-dir", tokens.to_str().unwrap()])
            .env("AWS_ROLE_ARN", format!("arn:aws:iam::{ACCOUNT}:role/irsa"))
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", file)
            .env("AWS_ENDPOINT_URL_ECR", &fake.url)
            .env("AWS_ENDPOINT_URL_STS", &fake.url)
            .env("AWS_REGION", "us-east-1")
            .run()
            .json();
    };
    by_web_identity(&file_a);
    by_web_identity(&file_b);
    by_web_identity(&file_b);
    assert_eq!(fake.ecr_calls(), 4, "two token files, two tokens");
    let list = Plugin::new(["cache", "list", "--cache-dir", tokens.to_str().unwrap()]).run();
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(
        list.stdout.lines().count(),
        5,
        "a header and four entries: {}",
        list.stdout
    );
    assert!(
        !list.stdout.contains("fake-ecr-token"),
        "cache list shows no token"
    );
    let clear = Plugin::new(["cache", "clear", "--cache-dir", tokens.to_str().unwrap()]).run();
    assert!(clear.stdout.contains("removed 4"), "{}", clear.stdout);
}

#[test]
fn no_token_or_key_reaches_stderr_at_any_verbosity() {
    use base64::Engine;
    let fake = FakeAws::start(Duration::ZERO, 0);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        format!("rules:\n- matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n  provider: ecr\n  ecr: {{roleArn: \"arn:aws:iam::{ACCOUNT}:role/r\"}}\n"),
    )
    .unwrap();
    let image = format!("{}/app", registry(false));
    let tokens = dir.path().join("tokens");
    for verbosity in ["-v", "-vv", "-vvv"] {
        for cache in [None, Some(tokens.as_path()), Some(tokens.as_path())] {
            let run = ecr(
                &fake,
                cache,
                &[
                    "get",
                    &image,
                    "--config",
                    rules.to_str().unwrap(),
                    verbosity,
                ],
            )
            .run();
            run.json();
            let n = fake.ecr_calls();
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", password(n)));
            for secret in [
                password(n).as_str(),
                &encoded,
                "fake-secret-access-key",
                "fake-assumed-secret",
                "fake-session-token",
            ] {
                assert!(
                    !run.stderr.contains(secret),
                    "{secret:?} on stderr at {verbosity}:\n{}",
                    run.stderr
                );
            }
            assert!(!run.stderr.is_empty(), "{verbosity} logs something");
        }
    }
}

#[test]
fn the_cache_directory_comes_from_the_flag_the_environment_or_the_rules_file() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str| root.path().join(name);
    let image = format!("{}/app", registry(false));
    let rules = |name: &str, cache: &str| {
        let path = root.path().join(format!("{name}.yaml"));
        std::fs::write(&path, format!("rules:\n- matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n  provider: ecr\ncache: {cache}\n")).unwrap();
        path
    };
    let get = |args: &[&str], env_dir: &Path| {
        let mut all = vec!["get", image.as_str()];
        all.extend(args);
        Plugin::new(all)
            .env("AWS_ACCESS_KEY_ID", "AKIAFAKECACHETEST")
            .env("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
            .env("AWS_ENDPOINT_URL_ECR", &fake.url)
            .env("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR", env_dir)
            .run()
            .json();
    };
    let from_file = rules("with-dir", "{dir: from-file}");
    get(&["--config", from_file.to_str().unwrap()], &dir("from-env"));
    entry(&dir("from-env"));
    assert!(
        !dir("from-file").exists(),
        "the environment wins over the rules file"
    );

    get(
        &[
            "--config",
            from_file.to_str().unwrap(),
            "--cache-dir",
            dir("from-flag").to_str().unwrap(),
        ],
        &dir("from-env"),
    );
    entry(&dir("from-flag"));

    let off = rules("off", "{enabled: false}");
    let calls = fake.ecr_calls();
    get(&["--config", off.to_str().unwrap()], &dir("off"));
    get(&["--config", off.to_str().unwrap()], &dir("off"));
    assert_eq!(
        fake.ecr_calls(),
        calls + 2,
        "cache: {{enabled: false}} fetches every time"
    );
    assert!(!dir("off").exists());

    get(&["--config", from_file.to_str().unwrap()], Path::new(""));
    entry(&root.path().join("from-file"));
}

/// A directory the running user does not own, holding a file that is not the plugin's.
fn foreign_directory(root: &Path) -> PathBuf {
    assert!(
        running_as_root(),
        "handing a directory to another user needs root (CI runs as root)"
    );
    let dir = root.join("foreign");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), "x").unwrap();
    std::os::unix::fs::chown(dir.join("data.txt"), Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_directory_of_another_user_is_refused_and_never_deleted_however_it_is_named() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let root = tempfile::tempdir().unwrap();
    let dir = foreign_directory(root.path());
    let rules = root.path().join("rules.yaml");
    std::fs::write(
        &rules,
        format!(
            "rules:\n- matchImages: [\"*.dkr.ecr.*.amazonaws.com\"]\n  provider: ecr\ncache: {{dir: {}}}\n",
            dir.display()
        ),
    )
    .unwrap();
    let image = format!("{}/app", registry(false));
    let by_flag = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--cache-dir", dir.to_str().unwrap()]);
        Plugin::new(all)
    };
    let by_env =
        |args: &[&str]| Plugin::new(args.to_vec()).env("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR", &dir);
    let by_rules = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", rules.to_str().unwrap()]);
        Plugin::new(all).env("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR", "")
    };
    type Way<'a> = &'a dyn Fn(&[&str]) -> Plugin;
    let ways: [Way; 3] = [&by_flag, &by_env, &by_rules];
    for way in ways {
        for action in ["list", "clear"] {
            way(&["cache", action])
                .run()
                .assert_error(1, "owned by uid 65534, not by the running user");
        }
        let run = way(&["get", &image, "-v"])
            .env("AWS_ACCESS_KEY_ID", "AKIAFAKECACHETEST")
            .env("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
            .env("AWS_ENDPOINT_URL_ECR", &fake.url)
            .run();
        run.json();
        assert!(
            run.stderr.contains("token cache unusable"),
            "{}",
            run.stderr
        );
        assert_eq!(names(&dir), ["data.txt"], "nothing added or removed");
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (65534, 0o755));
    }
}

#[test]
fn clear_removes_cached_tokens_and_nothing_else() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("kubernetes");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for name in [
        "azure.json",
        "config.json",
        "registry-auth.json",
        "notes.lock",
    ] {
        std::fs::write(dir.join(name), "{\"auths\": {}}").unwrap();
    }
    ecr(
        &fake,
        Some(&dir),
        &["get", &format!("{}/app", registry(false))],
    )
    .run()
    .json();
    entry(&dir);
    let clear = Plugin::new(["cache", "clear", "--cache-dir", dir.to_str().unwrap()]).run();
    assert_eq!(clear.code, 0, "{}", clear.stderr);
    assert!(clear.stdout.contains("removed 1 "), "{}", clear.stdout);
    assert_eq!(
        names(&dir),
        [
            "azure.json",
            "config.json",
            "notes.lock",
            "registry-auth.json"
        ]
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().mode() & 0o777,
        0o755,
        "an existing directory keeps its mode"
    );
}

#[test]
fn a_directory_others_can_write_is_refused_and_keeps_its_mode() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let root = tempfile::tempdir().unwrap();
    let image = format!("{}/app", registry(false));
    for mode in [0o1777, 0o777, 0o770] {
        let dir = root.path().join(format!("shared-{mode:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let run = ecr(&fake, Some(&dir), &["get", &image, "-v"]).run();
        run.json();
        assert!(run.stderr.contains("writable by others"), "{}", run.stderr);
        Plugin::new(["cache", "list", "--cache-dir", dir.to_str().unwrap()])
            .run()
            .assert_error(1, "writable by others");
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, mode);
        assert!(names(&dir).is_empty(), "nothing written to {mode:o}");
    }
}

#[test]
fn an_entry_with_a_huge_expiry_is_a_miss_for_get_and_list() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let cache = tempfile::tempdir().unwrap();
    let image = format!("{}/app", registry(false));
    for (n, expires_at) in [u64::MAX, 1 << 62, 100_000_000_000].into_iter().enumerate() {
        ecr(&fake, Some(cache.path()), &["get", &image])
            .run()
            .json();
        let path = entry(cache.path());
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        value["expiresAt"] = serde_json::json!(expires_at);
        std::fs::write(&path, value.to_string()).unwrap();
        let list = Plugin::new([
            "cache",
            "list",
            "--cache-dir",
            cache.path().to_str().unwrap(),
        ])
        .run();
        assert_eq!((list.code, list.stderr.as_str()), (0, ""), "{expires_at}");
        assert_eq!(
            list.stdout.lines().count(),
            1,
            "only the header: {}",
            list.stdout
        );
        let run = ecr(&fake, Some(cache.path()), &["get", &image]).run();
        assert_eq!(
            run.json()["auth"][registry(false)]["password"],
            password(n + 2),
            "{expires_at}: a miss, fetched again"
        );
        let seconds: u64 = run.json()["cacheDuration"]
            .as_str()
            .unwrap()
            .split('h')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(seconds <= 24, "{}", run.stdout);
    }
}

#[test]
fn a_waiter_that_gives_up_on_the_lock_says_one_line_at_most() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let cache = tempfile::tempdir().unwrap();
    let image = format!("{}/app", registry(false));
    ecr(&fake, Some(cache.path()), &["get", &image])
        .run()
        .json();
    let stored = entry(cache.path());
    let lock = stored.with_extension("lock");
    std::fs::remove_file(&stored).unwrap();
    // This test holds the lock the whole time, as a stuck fetcher would.
    let held = std::fs::File::open(&lock).unwrap();
    held.try_lock().unwrap();
    // One after the other: run side by side, the one that cannot reach ECR could read
    // what the other wrote once both gave up, and answer from it.
    ecr(&fake, Some(cache.path()), &["get", &image])
        .env("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")
        .run()
        .assert_error(1, "cannot reach ECR");
    let run = ecr(&fake, Some(cache.path()), &["get", &image]).run();
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{}", run.stdout);
    drop(held);
}
