//! CNI plugins of a test's own: shell scripts that log, fail or hang on
//! purpose (to test what berthd does when the network does that), in a
//! private `bin/` beside the `net.d/` whose conflist names them. Hand the
//! dirs to berthd (alone or in a [`crate::env::TestEnv`]) with
//! [`TestPlugins::berthd_options`]; berthd finds Debian's plugins after ours.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::berthd::BerthdOptions;
use crate::error::{Error, Result};

/// A tempdir with `bin/` (plugins) and `net.d/` (their conflist).
#[derive(Debug)]
pub struct TestPlugins {
    dir: tempfile::TempDir,
}

impl TestPlugins {
    /// Empty `bin/` and `net.d/` in a new tempdir.
    pub fn new() -> Result<TestPlugins> {
        let dir = tempfile::tempdir().map_err(Error::io("tempdir"))?;
        let t = TestPlugins { dir };
        for d in [t.bin_dir(), t.conf_dir()] {
            std::fs::create_dir_all(&d).map_err(Error::io(&d))?;
        }
        Ok(t)
    }

    /// The tempdir, for the files the plugins log to or wait for.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the plugins are.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// Where the conflist is.
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// Writes the executable plugin `name` running `script`.
    pub fn add(&self, name: &str, script: &str) -> Result<PathBuf> {
        let path = self.bin_dir().join(name);
        std::fs::write(&path, script).map_err(Error::io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(Error::io(&path))?;
        Ok(path)
    }

    /// Makes `10-test.conflist` (network `name`, CNI 1.0.0) chain `plugins`,
    /// replacing what it held.
    pub fn use_chain(&self, name: &str, plugins: &[serde_json::Value]) -> Result<()> {
        let file = self.conf_dir().join("10-test.conflist");
        let conf = serde_json::json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins});
        std::fs::write(&file, conf.to_string()).map_err(Error::io(&file))
    }

    /// Makes `10-test.conflist` (network `name`) run only the plugin `plugin`.
    pub fn use_only(&self, name: &str, plugin: &str) -> Result<()> {
        self.use_chain(name, &[serde_json::json!({ "type": plugin })])
    }

    /// `base` with berthd's CNI config from `net.d/` and our plugins first.
    pub fn berthd_options(&self, base: BerthdOptions) -> BerthdOptions {
        base.cni_conf_dir(self.conf_dir())
            .cni_plugin_dir(self.bin_dir())
    }
}
