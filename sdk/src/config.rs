//! The component's own configuration: this use's `config` from the workflow, merged over the
//! component's defaults (read-only). The same document is in [`crate::Context::config`].

use serde::de::DeserializeOwned;

use crate::Error;

/// The configuration as raw JSON text.
pub fn raw() -> String {
    if cfg!(not(target_arch = "wasm32")) {
        panic!(
            "orca_sdk::config needs the Orca host; it is only available inside a component (use Context::config in tests)"
        )
    }
    crate::__bindings::orca::plugin::config::get()
}

/// The configuration, decoded. Give `T` `#[serde(default)]` fields for optional keys. A fatal
/// error (code `bad_config`) if it does not fit.
pub fn get<T: DeserializeOwned>() -> Result<T, Error> {
    crate::context::decode(&raw(), "the config", "bad_config")
}
