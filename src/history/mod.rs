//! The execution history: a record of every run a worker child settles, appended to the stream
//! `<prefix>.history` when the setting `ebats.history` is on, and read back with filters.
//!
//! `record` (pure: what a record holds, its JSON), `query` (pure: filters, `since`), `event_tasks`
//! (pure: the tasks an event made), `writer` (in the worker child, off the task path), `reader`
//! (the newest records, read from the end backwards; a scan from a time to now; follow), through
//! the one stream reader `broker::stream_read`.

pub mod event_tasks;
pub mod query;
pub mod reader;
pub mod record;
pub mod writer;

pub use query::Query;
pub use reader::{follow, read, scan};
pub use record::Record;
pub use writer::Writer;
