//! Registry credentials: `rbox login` checks them against the registry and stores them in
//! `<root>/auth/auth.json` (Docker's config.json `auths` shape, base64 "user:password"), in a
//! 0700 directory, the file 0600; `rbox logout` removes them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use oci_client::secrets::RegistryAuth;

use super::{block_on, client, oci_error, PullOptions};
use crate::{Error, Result, Store};

const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    auth: String,
}

/// The registry a login names: "docker.io" for Docker Hub under any of its names, else the
/// host[:port] without scheme or path.
pub fn registry_key(server: &str) -> String {
    let s = server
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        h => h.to_string(),
    }
}

impl Store {
    fn auth_path(&self) -> PathBuf {
        self.root().join("auth/auth.json")
    }

    fn read_auths(&self) -> Result<AuthFile> {
        Ok(statefile::read_json_opt(&self.auth_path())?.unwrap_or_default())
    }

    fn write_auths(&self, auths: &AuthFile) -> Result<()> {
        let path = self.auth_path();
        let dir = path.parent().unwrap_or(self.root());
        fs::create_dir_all(dir).map_err(Error::at(dir, "creating"))?;
        // The directory keeps others out while the atomic write's temp file has the umask's mode.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(Error::at(dir, "chmod"))?;
        statefile::write_json(&path, auths)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(Error::at(&path, "chmod"))
    }

    /// Stored credentials for `registry` ("docker.io", "localhost:5000").
    pub(crate) fn credentials(&self, registry: &str) -> Result<RegistryAuth> {
        let auths = self.read_auths()?;
        let Some(e) = auths.auths.get(&registry_key(registry)) else {
            return Ok(RegistryAuth::Anonymous);
        };
        let bad = || Error::Other(format!("stored credentials for {registry} are corrupt"));
        let plain = BASE64.decode(&e.auth).map_err(|_| bad())?;
        let plain = String::from_utf8(plain).map_err(|_| bad())?;
        let (user, pass) = plain.split_once(':').ok_or_else(bad)?;
        Ok(RegistryAuth::Basic(user.to_string(), pass.to_string()))
    }

    /// Checks the credentials against the registry (as `docker login` does: `GET /v2/` with
    /// basic auth, or the token endpoint its challenge names) and stores them.
    pub fn login(
        &self,
        server: &str,
        user: &str,
        password: &str,
        opts: &PullOptions,
    ) -> Result<()> {
        let registry = registry_key(server);
        if user.is_empty() || password.is_empty() {
            return Err(Error::Other("username and password are required".into()));
        }
        block_on(verify(&registry, user, password, opts))??;
        let _lock = statefile::Lock::exclusive(&self.root().join("locks/auth.lock"))?;
        let mut auths = self.read_auths()?;
        auths.auths.insert(
            registry,
            Entry {
                auth: BASE64.encode(format!("{user}:{password}")),
            },
        );
        self.write_auths(&auths)
    }

    /// Forgets the credentials for `server`; false when there were none.
    pub fn logout(&self, server: &str) -> Result<bool> {
        let registry = registry_key(server);
        let _lock = statefile::Lock::exclusive(&self.root().join("locks/auth.lock"))?;
        let mut auths = self.read_auths()?;
        if auths.auths.remove(&registry).is_none() {
            return Ok(false);
        }
        self.write_auths(&auths)?;
        Ok(true)
    }
}

async fn verify(registry: &str, user: &str, password: &str, opts: &PullOptions) -> Result<()> {
    let host = super::endpoint(registry);
    let scheme = if opts.is_insecure(registry) {
        "http"
    } else {
        "https"
    };
    let url = format!("{scheme}://{host}/v2/");
    super::tls_provider();
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| Error::Other(format!("login to {registry}: {e}")))?;
    let res = http
        .get(&url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|e| Error::Other(format!("Get \"{url}\": {}", super::root_cause(&e))))?;
    if res.status().is_success() {
        return Ok(());
    }
    let bearer = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("bearer"));
    let unauthorized = || {
        Error::Other(format!(
            "Get \"{url}\": unauthorized: incorrect username or password"
        ))
    };
    if res.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::Other(format!(
            "Get \"{url}\": unexpected status {}",
            res.status()
        )));
    }
    if !bearer {
        return Err(unauthorized());
    }
    // Token registries: the token endpoint is what checks the password.
    let oci = client(opts, registry)?;
    let probe =
        oci_client::Reference::with_tag(host.clone(), "library/login".into(), "latest".into());
    let auth = RegistryAuth::Basic(user.to_string(), password.to_string());
    match oci
        .auth(&probe, &auth, oci_client::RegistryOperation::Pull)
        .await
    {
        Ok(_) => Ok(()),
        Err(oci_client::errors::OciDistributionError::AuthenticationFailure(_)) => {
            Err(unauthorized())
        }
        Err(e) => Err(oci_error(e, registry)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("registry-1.docker.io"), "docker.io");
        assert_eq!(registry_key(""), "docker.io");
        assert_eq!(registry_key("localhost:5000"), "localhost:5000");
        assert_eq!(registry_key("http://127.0.0.1:5000/v2/"), "127.0.0.1:5000");
    }

    #[test]
    fn credentials_round_trip_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut f = AuthFile::default();
        f.auths.insert(
            "r.example:5000".into(),
            Entry {
                auth: BASE64.encode("u:p:w"),
            },
        );
        store.write_auths(&f).unwrap();
        let mode = fs::metadata(store.auth_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        match store.credentials("r.example:5000").unwrap() {
            RegistryAuth::Basic(u, p) => assert_eq!((u.as_str(), p.as_str()), ("u", "p:w")),
            _ => panic!("expected basic credentials"),
        }
        assert!(matches!(
            store.credentials("other").unwrap(),
            RegistryAuth::Anonymous
        ));
        assert!(store.logout("r.example:5000").unwrap());
        assert!(!store.logout("r.example:5000").unwrap());
    }
}
