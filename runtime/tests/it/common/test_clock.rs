//! A clock tests move by hand, for code that takes an `execute::Clock`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use kubeskippy::operator::execute::Clock;

#[derive(Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    pub fn at(start: DateTime<Utc>) -> TestClock {
        TestClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, seconds: i64) {
        *self.0.lock().unwrap() += chrono::Duration::seconds(seconds);
    }
}
