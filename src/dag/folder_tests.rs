//! The folder against hostile files: FIFOs, oversized files, symlinks and `$f` paths that
//! lead out of the folder; and re-parsing only what changed.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::folder::DagFolder;
use super::load::DagBag;

const HEAD: &str = "$schema: https://airflow.apache.org/schemas/dag/2026-10-30.json\n";

fn dag(id: &str) -> String {
    format!("{HEAD}dag_id: {id}\ntasks:\n  - id: t\n    uses: updraft.bash\n    with: {{bash_command: echo}}\n")
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// Loads on another thread, so a hang fails the test instead of blocking it forever.
fn load_within(folder: &Path, limit: Duration) -> DagBag {
    let folder = folder.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(DagBag::load(&folder));
    });
    rx.recv_timeout(limit)
        .expect("loading the folder hung (a FIFO read blocks forever)")
}

#[test]
fn a_fifo_is_skipped_with_a_warning_and_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), dag("good")).unwrap();
    mkfifo(&dir.path().join("x.yaml"));
    let bag = load_within(dir.path(), Duration::from_secs(10));
    assert_eq!(bag.dags.len(), 1);
    assert!(bag.errors.is_empty(), "{:?}", bag.errors);
    let w = &bag.warnings["x.yaml"];
    assert_eq!(w.len(), 1);
    assert!(
        w[0].message.contains("a FIFO") && w[0].message.contains("skipped"),
        "{w:?}"
    );
}

#[test]
fn a_file_over_the_size_limit_is_an_import_error_and_the_others_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), dag("good")).unwrap();
    let mut big = dag("big");
    big.push_str(&format!("description: \"{}\"\n", "x".repeat(2000)));
    std::fs::write(dir.path().join("big.yaml"), &big).unwrap();
    let bag = DagFolder::new(dir.path(), 1000).load();
    assert_eq!(
        bag.dags.keys().map(|d| d.as_str()).collect::<Vec<_>>(),
        ["good"]
    );
    let e = &bag.errors["big.yaml"][0];
    assert!(
        e.message.contains(&format!("{} bytes", big.len()))
            && e.message.contains("at most 1000 bytes")
            && e.message.contains("core.dag_file_max_bytes"),
        "{e}"
    );
    // `$f` files are held to the same limit.
    std::fs::write(dir.path().join("big.sh"), "y".repeat(2000)).unwrap();
    std::fs::write(
        dir.path().join("uses_f.yaml"),
        format!("{HEAD}dag_id: f\ntasks:\n  - id: t\n    uses: updraft.bash\n    with: {{bash_command: {{$f: big.sh}}}}\n"),
    )
    .unwrap();
    let bag = DagFolder::new(dir.path(), 1000).load();
    let e = &bag.errors["uses_f.yaml"][0];
    assert!(e.message.contains("at most 1000 bytes"), "{e}");
}

#[test]
fn symlinks_and_f_paths_cannot_leave_the_folder() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "s3cret").unwrap();
    std::fs::write(outside.path().join("other.yaml"), dag("outsider")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
    };
    // A DAG file that is a link to a file outside.
    link(&outside.path().join("other.yaml"), "linked.yaml");
    // A folder link to outside, and a `$f` through it.
    link(outside.path(), "shared");
    std::fs::write(
        dir.path().join("reads.yaml"),
        format!("{HEAD}dag_id: reads\ntasks:\n  - id: t\n    uses: updraft.bash\n    with: {{bash_command: {{$f: shared/secret.txt}}}}\n"),
    )
    .unwrap();
    // Links that stay inside are fine.
    std::fs::create_dir(dir.path().join("sql")).unwrap();
    std::fs::write(dir.path().join("sql/q.sh"), "echo inside").unwrap();
    link(&dir.path().join("sql/q.sh"), "q_link.sh");
    std::fs::write(
        dir.path().join("inside.yaml"),
        format!("{HEAD}dag_id: inside\ntasks:\n  - id: t\n    uses: updraft.bash\n    with: {{bash_command: {{$f: q_link.sh}}}}\n"),
    )
    .unwrap();
    link(&dir.path().join("inside.yaml"), "alias.yml");

    let bag = DagBag::load(dir.path());
    let e = &bag.errors["linked.yaml"][0];
    assert!(e.message.contains("outside the DAGs folder"), "{e}");
    let e = &bag.errors["reads.yaml"][0];
    assert!(e.message.contains("outside the DAGs folder"), "{e}");
    assert!(!format!("{:?}", bag).contains("s3cret"));
    assert!(bag.warnings["shared"][0]
        .message
        .contains("outside the DAGs folder"));
    assert!(!bag.dags.keys().any(|d| d.as_str() == "outsider"));
    let inside = bag
        .dags
        .values()
        .find(|d| d.dag.dag_id.as_str() == "inside");
    let with = inside.unwrap().dag.tasks[0].args.to_literal_json();
    assert_eq!(with["bash_command"], "echo inside");
    // The in-folder link to `inside.yaml` defines the same dag_id: an ordinary duplicate.
    assert!(bag.errors["inside.yaml"][0]
        .message
        .contains("already defined in `alias.yml`"));
}

#[test]
fn a_symlink_loop_ends() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("a/loop")).unwrap();
    std::fs::write(dir.path().join("a/d.yaml"), dag("d")).unwrap();
    let bag = load_within(dir.path(), Duration::from_secs(10));
    assert_eq!(bag.dags.len(), 1);
    assert!(bag.errors.is_empty(), "{:?}", bag.errors);
}

/// Sets a file's modification time into the past, so its stamp is trusted at once.
fn age(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

#[test]
fn unchanged_files_are_not_parsed_again() {
    let dir = tempfile::tempdir().unwrap();
    for id in ["a", "b", "c"] {
        let p = dir.path().join(format!("{id}.yaml"));
        std::fs::write(&p, dag(id)).unwrap();
        age(&p);
    }
    std::fs::write(dir.path().join("cmd.sh"), "echo one").unwrap();
    age(&dir.path().join("cmd.sh"));
    let with_f = dir.path().join("f.yaml");
    std::fs::write(
        &with_f,
        format!("{HEAD}dag_id: f\ntasks:\n  - id: t\n    uses: updraft.bash\n    with: {{bash_command: {{$f: cmd.sh}}}}\n"),
    )
    .unwrap();
    age(&with_f);
    let mut folder = DagFolder::new(dir.path(), 1 << 20);
    let first = folder.load();
    assert_eq!((first.dags.len(), folder.parsed_last), (4, 4));
    let again = folder.load();
    assert_eq!(folder.parsed_last, 0, "nothing changed, nothing parsed");
    assert_eq!(
        first.dags.values().map(|d| &d.hash).collect::<Vec<_>>(),
        again.dags.values().map(|d| &d.hash).collect::<Vec<_>>()
    );
    // Touched but the same content: read, not parsed.
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("a.yaml"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(30))
        .unwrap();
    folder.load();
    assert_eq!(folder.parsed_last, 0);
    // A changed file is parsed, and only it.
    std::fs::write(dir.path().join("b.yaml"), dag("b2")).unwrap();
    let bag = folder.load();
    assert_eq!(folder.parsed_last, 1);
    assert!(bag.dags.keys().any(|d| d.as_str() == "b2"));
    // A changed `$f` file re-parses the DAG file that read it.
    std::fs::write(dir.path().join("cmd.sh"), "echo two").unwrap();
    let bag = folder.load();
    let f = bag.dags.values().find(|d| d.dag.dag_id.as_str() == "f");
    assert_eq!(
        f.unwrap().dag.tasks[0].args.to_literal_json()["bash_command"],
        "echo two"
    );
    // A removed file is gone from the bag.
    std::fs::remove_file(dir.path().join("c.yaml")).unwrap();
    let bag = folder.load();
    assert!(!bag.dags.keys().any(|d| d.as_str() == "c"));
}
