//! Customers as the stream says they are: the seller's own customers,
//! whose keys share their limits (and, prepaid, their credits).

use chrono::{DateTime, Utc};
use ingest::events::CustomerSettings;
use ingest::Event;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Customer {
    pub id: String,
    pub settings: CustomerSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Customers {
    /// Shared with copies of the projection until changed.
    by_id: BTreeMap<String, Arc<Customer>>,
    /// The sequence of each id's last event, deleted ids included: what a
    /// conditional append of the next change expects.
    last_seq: HashMap<String, u64>,
}

impl Customers {
    pub fn get(&self, id: &str) -> Option<&Customer> {
        self.by_id.get(id).map(|c| &**c)
    }

    /// Up to `limit` customers after `after` (an id), by id, whose id, name
    /// or email holds `query`, ignoring case (all when it is empty).
    pub fn search(&self, after: Option<&str>, limit: usize, query: &str) -> (Vec<&Customer>, bool) {
        let query = query.to_lowercase();
        let holds = |text: &str| text.to_lowercase().contains(&query);
        let (found, more) = crate::page_where(&self.by_id, after, limit, |c| {
            query.is_empty()
                || holds(&c.id)
                || holds(&c.settings.name)
                || c.settings.email.as_deref().is_some_and(holds)
        });
        (found.into_iter().map(|c| &**c).collect(), more)
    }

    /// The sequence of the last event about `id` (0: never seen).
    pub fn last_seq(&self, id: &str) -> u64 {
        self.last_seq.get(id).copied().unwrap_or(0)
    }

    pub(crate) fn apply(&mut self, seq: u64, ts: DateTime<Utc>, event: &Event) {
        match event {
            Event::CustomerCreated(e) => {
                self.last_seq.insert(e.customer_id.clone(), seq);
                let customer = Customer {
                    id: e.customer_id.clone(),
                    settings: e.settings.clone(),
                    created_at: ts,
                    updated_at: ts,
                };
                self.by_id.insert(e.customer_id.clone(), Arc::new(customer));
            }
            Event::CustomerUpdated(e) => {
                self.last_seq.insert(e.customer_id.clone(), seq);
                if let Some(c) = self.by_id.get_mut(&e.customer_id) {
                    let c = Arc::make_mut(c);
                    c.settings = e.settings.clone();
                    c.updated_at = ts;
                }
            }
            Event::CustomerDeleted(e) => {
                self.last_seq.insert(e.customer_id.clone(), seq);
                self.by_id.remove(&e.customer_id);
            }
            _ => {}
        }
    }
}
