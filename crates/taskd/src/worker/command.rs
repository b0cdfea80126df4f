//! Running the user's command for one sub-task: its environment and stdin, capturing
//! what of its output will be reported, and turning its exit into an [`Outcome`].

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use super::client::Claimed;
use super::protocol::{ClaimedSubTask, MAX_ERROR_MSG_CHARS, MAX_OUTPUT_CHARS, Outcome};

/// After the command exited, how long its pipes may stay open (held by processes it left
/// behind) before the worker stops reading them.
const PIPE_LINGER: Duration = Duration::from_secs(2);

/// The environment the command gets, on top of the worker's own (less `TASKD_SK`).
pub fn build_env(sub: &ClaimedSubTask) -> Vec<(&'static str, String)> {
    let json = |v: &Option<serde_json::Value>| match v {
        Some(v) => v.to_string(),
        None => "null".to_string(),
    };
    vec![
        ("TASKD_TASK_ID", sub.task_id.clone()),
        ("TASKD_SUB_TASK_ID", sub.sub_task_id.clone()),
        ("TASKD_ATTEMPT", sub.attempt.to_string()),
        ("TASKD_TASK_TYPE", sub.task_type.clone()),
        ("TASKD_TASK_NAME", sub.task_name.clone()),
        ("TASKD_TARGET", sub.target.clone()),
        ("TASKD_PROJECT_ID", sub.project_id.clone()),
        ("TASKD_INSTANCE_ID", sub.instance_id.clone()),
        ("TASKD_APP_ID", sub.app_id.clone().unwrap_or_default()),
        ("TASKD_DOCUMENT", json(&sub.document)),
        ("TASKD_INPUT", json(&sub.input)),
        ("TASKD_SERVICE", sub.service.clone().unwrap_or_default()),
        (
            "TASKD_PROGRESS_FILE",
            progress_file(sub).to_string_lossy().into_owned(),
        ),
    ]
}

/// Where the command may write its progress (a number 0-100, rewritten as it goes); the
/// worker sends it with each heartbeat. One file per sub-task run, removed after it.
pub fn progress_file(sub: &ClaimedSubTask) -> PathBuf {
    std::env::temp_dir().join(format!(
        "taskd-progress-{}-{}",
        sub.sub_task_id, sub.attempt
    ))
}

/// Removes a file when dropped (best effort: the command may never have written it).
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The progress the command last wrote, if it wrote a number 0-100.
pub fn read_progress(path: &Path) -> Option<u8> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<u8>().ok().filter(|p| *p <= 100)
}

/// Environment variables of the worker that its commands do not inherit.
const NOT_INHERITED: &[&str] = &["TASKD_SK"];

/// A started command: wait for it with [`Running::wait`], or [`Running::kill`] it.
pub struct Running {
    child: Child,
    stdout: tokio::task::JoinHandle<Vec<u8>>,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
}

/// What a finished command left: its status and the captured heads of its output.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Starts `command` for one claimed sub-task, in a process group of its own (so that a
/// lost lease kills everything it started, and a Ctrl-C meant for the worker does not
/// reach it), with the sub-task's JSON on stdin.
pub fn spawn(command: &[OsString], claimed: &Claimed) -> std::io::Result<Running> {
    let (program, args) = command.split_first().expect("clap requires a command");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(build_env(&claimed.sub_task))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in NOT_INHERITED {
        cmd.env_remove(name);
    }
    let mut child = cmd.spawn()?;

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut input = claimed.raw.to_string().into_bytes();
    input.push(b'\n');
    tokio::spawn(async move {
        // A command that does not read its stdin closes it: EPIPE is no error here.
        let _ = stdin.write_all(&input).await;
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    Ok(Running {
        child,
        stdout: tokio::spawn(capture(stdout, capture_limit(MAX_OUTPUT_CHARS))),
        stderr: tokio::spawn(capture(stderr, capture_limit(MAX_ERROR_MSG_CHARS))),
    })
}

impl Running {
    /// Waits for the command to exit and for its output.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Collects the output once [`Running::wait`] returned.
    pub async fn finish(self, status: ExitStatus) -> Finished {
        Finished {
            status,
            stdout: collect(self.stdout).await,
            stderr: collect(self.stderr).await,
        }
    }

    /// Kills the command and everything in its process group, and reaps it.
    pub async fn kill(mut self) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // The group id is the command's pid (`process_group(0)`).
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.stdout.abort();
        self.stderr.abort();
    }
}

async fn collect(mut reader: tokio::task::JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(PIPE_LINGER, &mut reader).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => Vec::new(),
        Err(_) => {
            // Something the command started still holds the pipe; stop reading (it gets
            // EPIPE on its next write).
            reader.abort();
            Vec::new()
        }
    }
}

/// Bytes to keep for an output of at most `max_chars` characters: four bytes per
/// character (UTF-8), plus slack for leading non-ASCII whitespace that trimming removes.
fn capture_limit(max_chars: usize) -> usize {
    max_chars * 4 + 64
}

/// Reads `reader` to its end (so the command never blocks on a full pipe) and keeps the
/// first `limit` bytes after any leading ASCII whitespace.
async fn capture(mut reader: impl AsyncRead + Unpin, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        if kept.is_empty() {
            let start = chunk
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(chunk.len());
            chunk = &chunk[start..];
        }
        let room = limit - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    kept
}

/// Text for a result field: decoded (invalid UTF-8 replaced), NUL replaced (taskd stores
/// no NUL and would refuse the result), trimmed, cut to at most `max_chars` characters on
/// a character boundary, and trimmed again at the cut. Both replacements are U+FFFD, one
/// character for one, so the cut falls where it would have.
pub fn clip(bytes: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes).replace('\0', "\u{fffd}");
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => text[..cut].trim_end().to_string(),
        None => text.to_string(),
    }
}

/// Exit 0: success with stdout as the output. Otherwise a failure coded `EXIT_<status>`
/// or `SIGNAL_<n>` with stderr as the message.
pub fn outcome(finished: &Finished) -> Outcome {
    if finished.status.success() {
        let output = clip(&finished.stdout, MAX_OUTPUT_CHARS);
        return Outcome::Succeeded {
            output: (!output.is_empty()).then_some(output),
        };
    }
    let (error_code, fallback) = match (finished.status.code(), finished.status.signal()) {
        (Some(code), _) => (
            format!("EXIT_{code}"),
            format!("command exited with status {code}"),
        ),
        (None, Some(signal)) => (
            format!("SIGNAL_{signal}"),
            format!("command was killed by signal {signal}"),
        ),
        (None, None) => (
            "EXIT_UNKNOWN".into(),
            format!("command ended: {}", finished.status),
        ),
    };
    let message = clip(&finished.stderr, MAX_ERROR_MSG_CHARS);
    Outcome::Failed {
        error_code,
        error_msg: Some(if message.is_empty() {
            fallback
        } else {
            message
        }),
    }
}

/// The command could not be started at all.
pub fn spawn_failure(error: &std::io::Error) -> Outcome {
    Outcome::Failed {
        error_code: "SPAWN_FAILED".into(),
        error_msg: Some(clip(
            format!("could not start the command: {error}").as_bytes(),
            MAX_ERROR_MSG_CHARS,
        )),
    }
}

/// Where `program` would be found when spawned: a path as given, or the first
/// executable of that name on `PATH`.
pub fn find_program(program: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let as_path = Path::new(program);
    if as_path.components().count() > 1 || program.as_encoded_bytes().contains(&b'/') {
        return executable(as_path).then(|| as_path.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sub_task() -> ClaimedSubTask {
        ClaimedSubTask {
            sub_task_id: "s1".into(),
            attempt: 2,
            task_id: "t1".into(),
            task_type: "firmwareUpgrade".into(),
            task_name: "fw".into(),
            project_id: "p".into(),
            instance_id: "".into(),
            app_id: None,
            service: None,
            target: "dev-001".into(),
            document: Some(json!({"package_ids": ["a"]})),
            input: None,
            lease_expires_at: "2026-11-23T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn the_environment_carries_every_field() {
        let env = build_env(&sub_task());
        let get = |name: &str| env.iter().find(|(n, _)| *n == name).unwrap().1.as_str();
        assert_eq!(env.len(), 13);
        assert_eq!(get("TASKD_SERVICE"), "");
        assert!(get("TASKD_PROGRESS_FILE").ends_with("taskd-progress-s1-2"));
        assert_eq!(get("TASKD_SUB_TASK_ID"), "s1");
        assert_eq!(get("TASKD_TASK_ID"), "t1");
        assert_eq!(get("TASKD_ATTEMPT"), "2");
        assert_eq!(get("TASKD_TASK_TYPE"), "firmwareUpgrade");
        assert_eq!(get("TASKD_TASK_NAME"), "fw");
        assert_eq!(get("TASKD_TARGET"), "dev-001");
        assert_eq!(get("TASKD_PROJECT_ID"), "p");
        assert_eq!(get("TASKD_INSTANCE_ID"), "");
        assert_eq!(get("TASKD_APP_ID"), "");
        assert_eq!(get("TASKD_DOCUMENT"), r#"{"package_ids":["a"]}"#);
        assert_eq!(get("TASKD_INPUT"), "null");
        let mut with_app = sub_task();
        with_app.app_id = Some("app-1".into());
        with_app.input = Some(json!({"col": "cell"}));
        let env = build_env(&with_app);
        let get = |name: &str| env.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get("TASKD_APP_ID"), "app-1");
        assert_eq!(get("TASKD_INPUT"), r#"{"col":"cell"}"#);
    }

    #[test]
    fn progress_is_a_number_from_0_to_100() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        assert_eq!(read_progress(&path), None);
        for (text, want) in [
            ("40\n", Some(40)),
            ("100", Some(100)),
            ("101", None),
            ("x", None),
            ("", None),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_progress(&path), want, "{text:?}");
        }
    }

    #[test]
    fn clip_trims_and_cuts_on_a_character_boundary() {
        assert_eq!(clip(b"  hello \n", 10), "hello");
        assert_eq!(clip(b"", 10), "");
        assert_eq!(clip(b"abcdef", 3), "abc");
        assert_eq!(clip(b"ab cdef", 3), "ab", "trimmed again at the cut");
        let text = "é".repeat(5000); // 2 bytes each
        let clipped = clip(text.as_bytes(), MAX_OUTPUT_CHARS);
        assert_eq!(clipped.chars().count(), MAX_OUTPUT_CHARS);
        assert_eq!(clipped.len(), 2 * MAX_OUTPUT_CHARS);
        let emoji = "😀".repeat(10);
        assert_eq!(clip(emoji.as_bytes(), 3), "😀😀😀");
        // Invalid UTF-8 is replaced, never a panic; so is NUL, which taskd would refuse.
        assert_eq!(clip(&[b'a', 0xff, b'b'], 10), "a\u{fffd}b");
        assert_eq!(clip(b"\0a\0\0b\0", 3), "\u{fffd}a\u{fffd}");
        assert_eq!(clip(b"ok\0tail\n", 10), "ok\u{fffd}tail");
    }

    #[tokio::test]
    async fn capture_keeps_the_head_after_leading_whitespace_and_drains_the_rest() {
        let mut data = b"\n\n   ".to_vec();
        data.extend(std::iter::repeat_n(b'x', 100_000));
        let kept = capture(&data[..], 1000).await;
        assert_eq!(kept.len(), 1000);
        assert!(kept.iter().all(|b| *b == b'x'));
        assert_eq!(capture(&b"  \n"[..], 1000).await, b"");
        // The head of a huge output still clips to the full limit.
        let big = "é".repeat(10_000);
        let kept = capture(big.as_bytes(), capture_limit(MAX_OUTPUT_CHARS)).await;
        assert_eq!(
            clip(&kept, MAX_OUTPUT_CHARS).chars().count(),
            MAX_OUTPUT_CHARS
        );
    }

    fn finished(raw_status: i32, stdout: &str, stderr: &str) -> Finished {
        Finished {
            status: ExitStatus::from_raw(raw_status),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn exit_statuses_map_to_outcomes() {
        assert_eq!(
            outcome(&finished(0, " done\n", "noise")),
            Outcome::Succeeded {
                output: Some("done".into())
            }
        );
        assert_eq!(
            outcome(&finished(0, "\n", "")),
            Outcome::Succeeded { output: None }
        );
        // wait(2) status: exit code in the high byte.
        assert_eq!(
            outcome(&finished(7 << 8, "ignored", "  device offline\n")),
            Outcome::Failed {
                error_code: "EXIT_7".into(),
                error_msg: Some("device offline".into())
            }
        );
        assert_eq!(
            outcome(&finished(3 << 8, "", " \n")),
            Outcome::Failed {
                error_code: "EXIT_3".into(),
                error_msg: Some("command exited with status 3".into())
            }
        );
        // Killed by SIGKILL: the low bits hold the signal.
        assert_eq!(
            outcome(&finished(9, "", "")),
            Outcome::Failed {
                error_code: "SIGNAL_9".into(),
                error_msg: Some("command was killed by signal 9".into())
            }
        );
        let long_err = "e".repeat(5000);
        match outcome(&finished(1 << 8, "", &long_err)) {
            Outcome::Failed { error_msg, .. } => {
                assert_eq!(error_msg.unwrap().len(), MAX_ERROR_MSG_CHARS)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn programs_are_found_on_path_or_as_paths() {
        assert!(find_program(OsStr::new("sh")).is_some());
        assert!(find_program(OsStr::new("/bin/sh")).is_some());
        assert!(find_program(OsStr::new("no-such-program-taskd-test")).is_none());
        assert!(find_program(OsStr::new("./no/such/program")).is_none());
    }
}
