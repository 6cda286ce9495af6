//! The launcher: a static background worker that waits for `pg_oncall.database` to exist and
//! keeps one sync worker alive in it (restarting it with a growing delay if it keeps dying).

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{exit_for_restart, IDLE_RECHECK, LIBRARY};
use crate::guc;

pub fn register() {
    BackgroundWorkerBuilder::new("pg_oncall launcher")
        .set_type("pg_oncall launcher")
        .set_library(LIBRARY)
        .set_function("pg_oncall_launcher_main")
        .enable_spi_access()
        // A hot standby enforces too: it loads the replicated tables (and never syncs).
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Whether the database exists, read the way the autovacuum launcher does: a heap scan of the
/// shared catalog pg_database (an index lookup needs a selected database).
fn database_exists(name: &str) -> bool {
    BackgroundWorker::transaction(|| {
        let mut found = false;
        // SAFETY: inside a transaction; pg_database is a shared catalog whose relcache entry is
        // nailed, so it can be scanned without a database; each tuple's data is a
        // FormData_pg_database, valid until the next heap_getnext.
        unsafe {
            let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
            let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
            loop {
                let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                let header = (*tuple).t_data;
                let form = (header as *const u8).add((*header).t_hoff as usize) as *const pg_sys::FormData_pg_database;
                if std::ffi::CStr::from_ptr((*form).datname.data.as_ptr()).to_bytes() == name.as_bytes() {
                    found = true;
                    break;
                }
            }
            pg_sys::table_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        }
        found
    })
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oncall_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let database = guc::database();
    let mut said_missing = false;
    let mut restart_delay = Duration::from_secs(1);
    loop {
        if BackgroundWorker::sighup_received() {
            // SAFETY: we are a normal backend-like process outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !database_exists(&database) {
            if !said_missing {
                log!("pg_oncall: database \"{database}\" (pg_oncall.database) does not exist; waiting for it");
                said_missing = true;
            }
            if !BackgroundWorker::wait_latch(Some(IDLE_RECHECK)) {
                exit_for_restart();
            }
            continue;
        }
        said_missing = false;
        let started = Instant::now();
        // SAFETY: reads our own PID, set at process start.
        let my_pid = unsafe { pg_sys::MyProcPid };
        let worker = BackgroundWorkerBuilder::new("pg_oncall sync")
            .set_type("pg_oncall sync")
            .set_library(LIBRARY)
            .set_function("pg_oncall_sync_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_extra(&database)
            .set_notify_pid(my_pid)
            .load_dynamic();
        match worker {
            Ok(worker) => {
                // The postmaster sets our latch whenever the worker starts or stops.
                while matches!(worker.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted)) {
                    if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
                        exit_for_restart();
                    }
                }
            }
            Err(_) => warning!("pg_oncall: could not start the sync worker (max_worker_processes reached?)"),
        }
        // A worker that died at once is not restarted in a tight loop.
        restart_delay = if started.elapsed() > Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            (restart_delay * 2).min(Duration::from_secs(30))
        };
        if !BackgroundWorker::wait_latch(Some(restart_delay)) {
            exit_for_restart();
        }
    }
}
