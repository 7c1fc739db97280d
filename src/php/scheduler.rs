//! `EventManager` (what tasks each event makes) and `Scheduler` (routes events to tasks).

use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, ZendHashTable, Zval};

use crate::php::args::{bad_input, checked, int_arg, string_arg};
use crate::php::producer::{options_json, refused, Task};
use crate::php::settings;
use crate::php::subscriber::{run_err, Php};
use crate::services::publishing;
use crate::services::scheduling::{self, Options};

#[php_class]
#[php(name = "Asynclib\\Ebats\\EventManager")]
pub struct EventManager;

#[php_impl]
impl EventManager {
    /// Registers task `$task_name` on `$topic` for `$event`, delayed by `$delay` seconds, with
    /// `$options` (`unique`, `unique_for`, `limit`).
    pub fn register(
        event: &Zval,
        task_name: &Zval,
        topic: &Zval,
        delay: Option<&Zval>,
        options: Option<&ZendHashTable>,
    ) -> PhpResult<()> {
        let event = string_arg(event, "Argument #1 ($event)")?;
        let task_name = string_arg(task_name, "Argument #2 ($task_name)")?;
        let topic = string_arg(topic, "Argument #3 ($topic)")?;
        let delay = int_arg(delay, 0, "Argument #4 ($delay)")?;
        let options = options_json(options)?;
        checked(scheduling::register(event, task_name, topic, delay, &options))
    }

    /// Publishes `$follow_up` once every task an `$event` made has ended: `$when` `'always'` (finally),
    /// `'success'` (then: all succeeded) or `'failure'` (catch: one failed for good or was cancelled). The
    /// follow-up carries the event's params and the group's outcome under `_group`.
    pub fn then(event: &Zval, follow_up: &Zval, when: Option<&Zval>) -> PhpResult<()> {
        let event = string_arg(event, "Argument #1 ($event)")?;
        let follow_up = string_arg(follow_up, "Argument #2 ($follow_up)")?;
        let when = match when {
            Some(w) => string_arg(w, "Argument #3 ($when)")?,
            None => "always".to_string(),
        };
        checked(scheduling::then(event, follow_up, &when))
    }

    /// Publishes `$event` with `$options` as its parameters at every tick of `$expression`; settings `name`,
    /// `timezone`, `catchup`. Returns the schedule's name.
    pub fn cron(expression: &Zval, event: &Zval, options: Option<&Zval>, settings: Option<&Zval>) -> PhpResult<String> {
        crate::php::schedules::declare_in_code(expression, event, options, settings)
    }

    /// Names the application whose schedules this process declares with cron(): a Scheduler of this
    /// process then appends them as that application's whole set (its schedules no longer declared are
    /// removed). Without an owner, declarations only add or change schedules.
    #[php(name = "cronOwner")]
    pub fn cron_owner(owner: &Zval) -> PhpResult<()> {
        crate::php::schedules::set_code_owner(owner)
    }

    /// The tasks registered for `$event` (each a Task with an empty params array).
    #[php(name = "getTasks")]
    pub fn get_tasks(event: String) -> PhpResult<Vec<Task>> {
        scheduling::tasks_for(&event)
            .iter()
            .map(|d| publishing::Task::new(&d.topic, &d.name, d.delay as i64).map(Task::from).map_err(refused))
            .collect()
    }

    /// The names of all events with registered tasks.
    #[php(name = "getEvents")]
    pub fn get_events() -> Vec<String> {
        scheduling::events()
    }
}

#[php_class]
#[php(name = "Asynclib\\Ebats\\Scheduler")]
pub struct Scheduler {
    prefetch: u16,
    metrics: Option<std::net::SocketAddr>,
}

#[php_impl]
impl Scheduler {
    pub const EXCHANGE_EVENT: &'static str = "ebats.core.event";
    pub const EXCHANGE_TASK: &'static str = "ebats.task.ready";
    pub const EXCHANGE_DELAY: &'static str = "ebats.task.delay";
    pub const QUEUE_EVENT: &'static str = "ebats.events";

    pub fn __construct() -> Self {
        Scheduler { prefetch: 256, metrics: None }
    }

    /// Serve `/metrics` (Prometheus) and `/healthz` on `ip:port` while running (default: the
    /// setting `ebats.metrics_address`; off when neither is set).
    #[php(name = "setMetricsAddress")]
    pub fn set_metrics_address(
        self_: &mut ZendClassObject<Scheduler>,
        address: String,
    ) -> PhpResult<&mut ZendClassObject<Scheduler>> {
        self_.metrics = Some(crate::metrics::parse_address(&address).map_err(bad_input)?);
        Ok(self_)
    }

    /// Consumes events and routes each to its tasks, until the process is stopped.
    pub fn run(&self) -> PhpResult<()> {
        let settings = settings::current()?;
        let options = Options { prefetch: self.prefetch, metrics: self.metrics };
        scheduling::run(&settings, options, &mut Php).map_err(run_err)
    }
}
