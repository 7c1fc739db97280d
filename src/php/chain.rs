//! `Asynclib\Ebats\Chain`: tasks run one after the other, each once the one before succeeded
//! (what a chain is: `crate::chain`).

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;

use crate::php::args::{params_json, type_error};
use crate::php::producer::refused;
use crate::php::settings;
use crate::services::publishing;

#[php_class]
#[php(name = "Asynclib\\Ebats\\Chain")]
pub struct Chain;

#[php_impl]
impl Chain {
    /// Publishes a chain of `$steps` (each `[topic, name, params, delay]`, params and delay optional,
    /// or with those keys): its first step now, each next one when the one before succeeded. Returns
    /// the chain's id; step n runs under the task id `<chain id>-<n>`.
    pub fn create(steps: &Zval) -> PhpResult<String> {
        if !steps.is_array() {
            return Err(type_error(format!(
                "Asynclib\\Ebats\\Chain::create(): Argument #1 ($steps) must be of type array, {} given",
                steps.get_type()
            )));
        }
        let steps = params_json(steps, "chain steps")?;
        publishing::create_chain(&settings::current()?, &steps).map_err(refused)
    }
}
