//! What can be checked of `deploy/` on a machine without Docker or
//! Kubernetes: the manifests parse and name what they must, every setting
//! nodai reads is documented in the guide, the deployment files set no
//! setting nodai does not read (a typo would be ignored silently), and the
//! cluster script is valid shell. The cluster script itself runs in
//! `cluster.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn files(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_parse_and_kustomize_lists_them_all() {
    let k8s = deploy().join("k8s");
    let mut kinds = BTreeSet::new();
    for path in files(&k8s, "yaml") {
        for doc in yaml(&path) {
            if doc.is_null() {
                continue;
            }
            let what = format!("a document in {}", path.display());
            assert!(doc["apiVersion"].as_str().is_some(), "{what} has no apiVersion");
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{what} has no kind"));
            assert!(
                doc["metadata"]["name"].as_str().is_some(),
                "{what} has no metadata.name"
            );
            kinds.insert(kind.to_owned());
        }
    }
    for kind in ["Deployment", "StatefulSet", "Service", "Secret", "ConfigMap"] {
        assert!(kinds.contains(kind), "no {kind} in deploy/k8s (found {kinds:?})");
    }
    let kustomization = &yaml(&k8s.join("kustomization.yaml"))[0];
    let listed: BTreeSet<&str> = kustomization["resources"]
        .as_vec()
        .expect("kustomization.yaml lists resources")
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for path in files(&k8s, "yaml") {
        let name = path.file_name().unwrap().to_str().unwrap();
        if name != "kustomization.yaml" {
            assert!(listed.contains(name), "kustomization.yaml does not list {name}");
        }
    }
    for name in listed {
        assert!(k8s.join(name).is_file(), "kustomization.yaml lists a missing {name}");
    }
}

#[test]
fn compose_runs_three_nats_nodes_two_api_replicas_and_a_worker() {
    let compose = &yaml(&deploy().join("compose.yaml"))[0];
    let services = compose["services"].as_hash().expect("compose.yaml has services");
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for name in ["nats-1", "nats-2", "nats-3", "api-1", "api-2", "worker-1"] {
        assert!(names.contains(name), "compose.yaml has no {name} service ({names:?})");
    }
    for (name, role) in [("api-1", "api"), ("api-2", "api"), ("worker-1", "worker")] {
        let service = &compose["services"][name];
        let text = format!("{:?} {:?}", service["command"], service["environment"]);
        assert!(
            text.contains(&format!("\"{role}\"")) || text.contains(&format!("--role={role}")),
            "{name} does not run --role {role}: {text}"
        );
    }
}

/// The environment variables `nodai serve` reads, from its flag definitions.
fn settings() -> BTreeSet<String> {
    let config = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs"));
    let mut names: BTreeSet<String> = config
        .split("env = \"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    names.insert("NODAI_LOG".into());
    assert!(names.len() > 10, "found only {names:?} in config.rs");
    names
}

#[test]
fn the_guide_documents_every_setting() {
    let guide = read(&deploy().join("README.md"));
    let readme = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"));
    for name in settings() {
        assert!(guide.contains(&name), "deploy/README.md does not document {name}");
        assert!(readme.contains(&name), "README.md does not document {name}");
    }
}

#[test]
fn deployment_files_set_only_settings_nodai_reads() {
    let known = settings();
    // Names that look like settings but are not nodai's: the cluster
    // script's binary, the lease and snapshot buckets of the stream NODAI,
    // and the NATS server configs' own variable for the nodai user's password.
    let others = ["NODAI_BIN", "NODAI_LEASES", "NODAI_SNAPSHOTS", "NODAI_PASSWORD"];
    let mut checked = 0;
    for dir in ["", "systemd", "k8s", "nats"] {
        for entry in std::fs::read_dir(deploy().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_file() || path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let text = read(&path);
            for (at, _) in text.match_indices("NODAI_") {
                let name: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // `NODAI_*`: the family, not a setting.
                if name.ends_with('_') {
                    continue;
                }
                assert!(
                    known.contains(&name) || others.contains(&name.as_str()),
                    "{} sets {name}, which nodai does not read",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} settings found in deploy/");
}

#[test]
fn the_cluster_script_is_valid_shell() {
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(deploy().join("local-cluster.sh"))
        .status()
        .unwrap();
    assert!(status.success());
}
