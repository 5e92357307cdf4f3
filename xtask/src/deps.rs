//! The binary's dependency tree, read from `cargo metadata` for the target and the features
//! the binary is built with, and written in two formats: the audit data `cargo auditable`
//! embeds in a binary (zlib-compressed JSON, section `.dep-v0`), and a CycloneDX 1.5 SBOM.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::write::ZlibEncoder;
use serde_json::{Value, json};

use crate::tools;

/// The package whose binary `dist` ships.
pub const ROOT: &str = "image-credential-provider";

/// How a package is needed: in the binary, or only to build it (build scripts, their deps).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Compiled into the binary.
    Runtime,
    /// Only run while building.
    Build,
}

/// One package of the tree.
#[derive(Debug)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Where it comes from, in the audit data's words: `crates.io`, `git`, `local`, `registry`.
    pub source: &'static str,
    /// Its `license` field (an SPDX expression, old `/` separators read as `OR`).
    pub license: Option<String>,
    /// How it is needed.
    pub kind: Kind,
    /// Indices of its dependencies in [`Tree::packages`].
    pub dependencies: Vec<usize>,
    /// Whether this is the binary's own package.
    pub root: bool,
}

impl Package {
    /// The package URL, `pkg:cargo/NAME@VERSION`.
    pub fn purl(&self) -> String {
        format!("pkg:cargo/{}@{}", self.name, self.version)
    }
}

/// The dependency tree of the binary, packages sorted by name, version and source.
pub struct Tree {
    /// Every package, the root among them.
    pub packages: Vec<Package>,
    /// The workspace's target directory.
    pub target_directory: String,
    /// The root package's `repository`, where its source is, when it says.
    pub repository: Option<String>,
}

impl Tree {
    /// The binary's own package.
    pub fn root(&self) -> &Package {
        self.packages.iter().find(|p| p.root).expect("a root")
    }
}

/// Reads the tree from `cargo metadata` for `target`, with the root's default features.
pub fn read(cargo: &Path, workspace: &Path, target: &str) -> Result<Tree> {
    let stdout = tools::output(
        Command::new(cargo)
            .current_dir(workspace)
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", target]),
    )?;
    let metadata: Value = serde_json::from_slice(&stdout).context("cargo metadata's output")?;
    from_metadata(&metadata, &workspace.join("Cargo.toml"))
}

/// The tree of [`ROOT`] in `cargo metadata` output.
fn from_metadata(metadata: &Value, root_manifest: &Path) -> Result<Tree> {
    let packages = metadata["packages"].as_array().context("no packages")?;
    let by_id: BTreeMap<&str, &Value> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let root_id = packages
        .iter()
        .find(|p| p["name"] == ROOT && p["manifest_path"] == root_manifest.to_str().unwrap_or(""))
        .and_then(|p| p["id"].as_str())
        .with_context(|| format!("no package {ROOT} at {}", root_manifest.display()))?;
    // Edges from the resolve graph: runtime (normal) and build edges; dev edges are not
    // part of a binary.
    let mut edges: BTreeMap<&str, Vec<(&str, Kind)>> = BTreeMap::new();
    for node in metadata["resolve"]["nodes"]
        .as_array()
        .context("no resolve")?
    {
        let id = node["id"].as_str().context("node id")?;
        for dep in node["deps"].as_array().into_iter().flatten() {
            let kinds: Vec<&Value> = dep["dep_kinds"].as_array().into_iter().flatten().collect();
            let kind = if kinds.iter().any(|k| k["kind"].is_null()) {
                Kind::Runtime
            } else if kinds.iter().any(|k| k["kind"] == "build") {
                Kind::Build
            } else {
                continue;
            };
            edges
                .entry(id)
                .or_default()
                .push((dep["pkg"].as_str().context("dep id")?, kind));
        }
    }
    let runtime = reach(root_id, &edges, |kind| kind == Kind::Runtime);
    let all = reach(root_id, &edges, |_| true);

    let mut ids: Vec<&str> = all.iter().copied().collect();
    let key = |id: &str| {
        let p = by_id[id];
        (
            p["name"].as_str().unwrap_or("").to_string(),
            p["version"].as_str().unwrap_or("").to_string(),
            source(&p["source"]),
        )
    };
    ids.sort_by_key(|id| key(id));
    let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut tree = Vec::with_capacity(ids.len());
    for id in &ids {
        let p = by_id
            .get(id)
            .with_context(|| format!("unknown package {id}"))?;
        let mut dependencies: Vec<usize> = edges
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|(dep, _)| index.get(dep).copied())
            .collect();
        dependencies.sort_unstable();
        dependencies.dedup();
        let (name, version, source) = key(id);
        tree.push(Package {
            name,
            version,
            source,
            license: p["license"].as_str().map(|l| l.replace('/', " OR ")),
            kind: if runtime.contains(id) {
                Kind::Runtime
            } else {
                Kind::Build
            },
            dependencies,
            root: *id == root_id,
        });
    }
    if tree.iter().filter(|p| p.root).count() != 1 {
        bail!("the dependency tree has no single root");
    }
    Ok(Tree {
        packages: tree,
        target_directory: metadata["target_directory"]
            .as_str()
            .context("no target_directory")?
            .to_string(),
        repository: by_id[root_id]["repository"].as_str().map(String::from),
    })
}

/// The packages reachable from `root` over the edges `follow` accepts.
fn reach<'a>(
    root: &'a str,
    edges: &BTreeMap<&'a str, Vec<(&'a str, Kind)>>,
    follow: impl Fn(Kind) -> bool,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        for (dep, kind) in edges.get(id).into_iter().flatten() {
            if follow(*kind) && seen.insert(dep) {
                queue.push_back(dep);
            }
        }
    }
    seen
}

/// The audit data's name for a cargo source.
fn source(source: &Value) -> &'static str {
    match source.as_str() {
        None => "local",
        Some(s) if s.ends_with("github.com/rust-lang/crates.io-index") => "crates.io",
        Some("sparse+https://index.crates.io/") => "crates.io",
        Some(s) if s.starts_with("git+") => "git",
        Some(_) => "registry",
    }
}

/// The audit data `cargo auditable` embeds (format 0, from `cargo metadata`), zlib-compressed.
pub fn audit_data(tree: &Tree) -> Result<Vec<u8>> {
    let packages: Vec<Value> = tree
        .packages
        .iter()
        .map(|p| {
            let mut package = json!({"name": p.name, "version": p.version, "source": p.source});
            if p.kind == Kind::Build {
                package["kind"] = json!("build");
            }
            if !p.dependencies.is_empty() {
                package["dependencies"] = json!(p.dependencies);
            }
            if p.root {
                package["root"] = json!(true);
            }
            package
        })
        .collect();
    let text = serde_json::to_vec(&json!({ "packages": packages }))?;
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(&text)?;
    Ok(encoder.finish()?)
}

/// The CycloneDX 1.5 SBOM of the tree, dated `epoch` (the commit's time).
///
/// Every package is a component whose `bom-ref` is its purl; build-only packages have scope
/// `excluded` (they are not in the binary), the others `required`.
pub fn cyclonedx(tree: &Tree, epoch: i64) -> Result<Vec<u8>> {
    let component = |p: &Package, kind: &str| {
        let mut component = json!({
            "type": kind,
            "bom-ref": p.purl(),
            "name": p.name,
            "version": p.version,
            "purl": p.purl(),
        });
        if !p.root {
            component["scope"] = json!(match p.kind {
                Kind::Runtime => "required",
                Kind::Build => "excluded",
            });
        }
        if let Some(license) = &p.license {
            component["licenses"] = json!([{ "expression": license }]);
        }
        component
    };
    let root = tree.root();
    let bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(epoch),
            "tools": {"components": [{
                "type": "application",
                "name": "cargo xtask dist",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": component(root, "application"),
        },
        "components": tree.packages.iter().filter(|p| !p.root)
            .map(|p| component(p, "library")).collect::<Vec<_>>(),
        "dependencies": tree.packages.iter().map(|p| json!({
            "ref": p.purl(),
            "dependsOn": p.dependencies.iter().map(|i| tree.packages[*i].purl()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_vec_pretty(&bom)?;
    text.push(b'\n');
    Ok(text)
}

/// `epoch` (seconds, UTC) as RFC 3339, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(epoch: i64) -> String {
    let (days, seconds) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_601_599), "2026-12-06T23:59:59Z");
    }

    #[test]
    fn build_only_packages_are_marked_and_dev_ones_left_out() {
        let metadata = json!({
            "target_directory": "/t",
            "packages": [
                {"id": "root", "name": ROOT, "version": "1.0.0", "source": null,
                 "manifest_path": "/w/Cargo.toml", "license": "Apache-2.0"},
                {"id": "lib", "name": "lib", "version": "0.2.0", "license": "MIT/Apache-2.0",
                 "source": "registry+https://github.com/rust-lang/crates.io-index"},
                {"id": "cc", "name": "cc", "version": "1.0.0",
                 "source": "sparse+https://index.crates.io/"},
                {"id": "test", "name": "test-only", "version": "1.0.0", "source": null},
            ],
            "resolve": {"nodes": [
                {"id": "root", "deps": [
                    {"pkg": "lib", "dep_kinds": [{"kind": null}]},
                    {"pkg": "test", "dep_kinds": [{"kind": "dev"}]},
                ]},
                {"id": "lib", "deps": [{"pkg": "cc", "dep_kinds": [{"kind": "build"}]}]},
                {"id": "cc", "deps": []},
                {"id": "test", "deps": []},
            ]},
        });
        let tree = from_metadata(&metadata, Path::new("/w/Cargo.toml")).unwrap();
        let names: Vec<_> = tree.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["cc", ROOT, "lib"]);
        assert_eq!(tree.packages[0].kind, Kind::Build);
        assert_eq!(tree.packages[0].source, "crates.io");
        assert_eq!(
            tree.packages[2].license.as_deref(),
            Some("MIT OR Apache-2.0")
        );
        assert_eq!(tree.packages[2].dependencies, [0]);
        assert_eq!(tree.root().dependencies, [2]);
        assert_eq!(tree.root().source, "local");
    }
}
