//! The operator's HTTP routes, served beside the roles' own (`kurz serve`; the parked
//! routes also by `kurz watchdog`). Admin only in token mode. The work behind them is
//! the projector's (`kurz_projector::replay`, `kurz_projector::watchdog::parked`);
//! the commands that call them are in `crate::cli`.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /admin/replay` | `{"projections": [names or "all"], "verify": bool}` | 202 and the status; 409 while one runs |
//! | `GET /admin/replay` | | the status: progress and, once done, the report |
//! | `GET /admin/parked` | | `{"count": n, "parked": [record…]}` |
//! | `POST /admin/parked/redrive` | `{"topic"?, "partition"?, "key"?}` (`{}`: all) | `{"delivered", "failed", "dead_lettered"}` |
//! | `POST /admin/parked/skip` | `{"topic", "partition", "key", "offset"}` | the same; 404 if not parked |

pub mod parked;
pub mod replay;

use kurz_command_api::auth::{Auth, HasAuth};
use std::sync::Arc;

/// A route group's state with the process's authentication beside it.
#[derive(Clone)]
struct Admin<T> {
    inner: T,
    auth: Arc<Auth>,
}

impl<T> HasAuth for Admin<T> {
    fn auth(&self) -> &Auth {
        &self.auth
    }
}
