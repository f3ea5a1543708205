//! A real container registry on loopback: the CNCF distribution registry v2 (Debian's
//! `docker-registry`), for registry verification tests and the demo. It serves TLS from a
//! CA generated here and authenticates with htpasswd: user `AWS` and a bcrypt (made by
//! Apache's `htpasswd -B`) of the password the AWS emulator issues. Both programs are
//! Debian packages `make test` installs.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::ca::TestCa;
use crate::operator::free_port;

/// How long the registry may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry; stopped (and its files removed) on drop.
pub struct Registry {
    child: Option<Child>,
    /// `https://127.0.0.1:<port>`: what ECR_REGISTRY_ENDPOINT_URL points at.
    pub url: String,
    pub(crate) addr: SocketAddr,
    /// The PEM file of the CA that signed its certificate (for AWS_CA_BUNDLE).
    pub ca_file: PathBuf,
    dir: PathBuf,
}

// === impl Registry ===

impl Registry {
    /// Starts `docker-registry` accepting user `AWS` with `password` only.
    pub fn start(password: &str) -> Result<Registry, String> {
        let addr = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "ecr-registry-{}-{}",
            std::process::id(),
            addr.port()
        ));
        fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ca = TestCa::new("registry-test-ca").map_err(|e| e.to_string())?;
        let (cert, key) = ca
            .issue(&["127.0.0.1", "localhost"], "registry")
            .map_err(|e| e.to_string())?;
        write(&dir.join("cert.pem"), &cert.pem())?;
        write(&dir.join("key.pem"), &key.serialize_pem())?;
        let ca_file = dir.join("ca.pem");
        write(&ca_file, &ca.pem())?;
        htpasswd(&dir.join("htpasswd"), password)?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n\
             http:\n  addr: {addr}\n  secret: registry-test-secret\n  tls:\n    certificate: {dir}/cert.pem\n    key: {dir}/key.pem\n\
             auth:\n  htpasswd:\n    realm: ecr-test-registry\n    path: {dir}/htpasswd\n",
            data = dir.join("data").display(),
            dir = dir.display(),
        );
        write(&dir.join("config.yml"), &config)?;
        // The access log (stdout) and the registry's own (stderr), in one file.
        let log = File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                format!("cannot start docker-registry (apt install docker-registry): {e}")
            })?;
        let mut registry = Registry {
            child: Some(child),
            url: format!("https://{addr}"),
            addr,
            ca_file,
            dir,
        };
        registry.wait_listening()?;
        Ok(registry)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "docker-registry exited with {status}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "docker-registry did not listen on {}: {}",
            self.addr,
            self.log()
        ))
    }

    /// The registry's own log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Stops the process; its address then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// bcrypt keys its cipher with the first 72 bytes of a password and ignores the rest,
/// both in `htpasswd` and in the registry's Go implementation.
const BCRYPT_KEY_BYTES: usize = 72;

/// `htpasswd -Bbn AWS <password>` into `path`: the bcrypt file the registry reads.
/// `htpasswd` refuses passwords over 256 bytes, and an ECR-sized one is 2,700, so it is
/// given the 72 bytes bcrypt uses: the registry then accepts exactly the passwords that
/// start with them (a wrong token differs from the first byte on).
fn htpasswd(path: &Path, password: &str) -> Result<(), String> {
    let key = password.get(..BCRYPT_KEY_BYTES).unwrap_or(password);
    let out = Command::new("htpasswd")
        .args(["-Bbn", "AWS", key])
        .output()
        .map_err(|e| format!("cannot run htpasswd (apt install apache2-utils): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "htpasswd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    fs::write(path, out.stdout).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, content: &str) -> Result<(), String> {
    fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))
}
