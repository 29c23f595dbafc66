//! The workflow registry as the stream says it is.

use chrono::{DateTime, Utc};
use ingest::events::WorkflowSettings;
use ingest::Event;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Workflow {
    pub id: String,
    pub settings: WorkflowSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Workflows {
    by_id: BTreeMap<String, Workflow>,
    /// The sequence of each id's last event, deleted ids included: what a
    /// conditional append of the next change expects.
    last_seq: HashMap<String, u64>,
}

impl Workflows {
    pub fn get(&self, id: &str) -> Option<&Workflow> {
        self.by_id.get(id)
    }

    /// Up to `limit` workflows after `after` (an id), by id.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<&Workflow>, bool) {
        crate::page(&self.by_id, after, limit)
    }

    /// The sequence of the last event about `id` (0: never seen).
    pub fn last_seq(&self, id: &str) -> u64 {
        self.last_seq.get(id).copied().unwrap_or(0)
    }

    pub(crate) fn apply(&mut self, seq: u64, ts: DateTime<Utc>, event: &Event) {
        let id = match event {
            Event::WorkflowRegistered(e) => &e.workflow_id,
            Event::WorkflowUpdated(e) => &e.workflow_id,
            Event::WorkflowDeleted(e) => &e.workflow_id,
            _ => return,
        };
        self.last_seq.insert(id.clone(), seq);
        match event {
            Event::WorkflowRegistered(e) => {
                self.by_id.insert(
                    e.workflow_id.clone(),
                    Workflow {
                        id: e.workflow_id.clone(),
                        settings: e.settings.clone(),
                        created_at: ts,
                        updated_at: ts,
                    },
                );
            }
            Event::WorkflowUpdated(e) => {
                if let Some(w) = self.by_id.get_mut(&e.workflow_id) {
                    w.settings = e.settings.clone();
                    w.updated_at = ts;
                }
            }
            Event::WorkflowDeleted(e) => {
                self.by_id.remove(&e.workflow_id);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::events::{WorkflowDeleted, WorkflowRegistered, WorkflowUpdated};
    use ingest::Micros;

    #[test]
    fn register_update_delete() {
        let settings = |name: &str| WorkflowSettings {
            name: name.into(),
            upstream_url: "builtin:echo".into(),
            price_per_request: Micros::new(5),
            max_cost_per_request: None,
            price_per_million_input_tokens: Default::default(),
            price_per_million_output_tokens: Default::default(),
        };
        let mut w = Workflows::default();
        let now = Utc::now();
        w.apply(
            1,
            now,
            &Event::WorkflowRegistered(WorkflowRegistered {
                workflow_id: "wf".into(),
                settings: settings("a"),
            }),
        );
        w.apply(
            2,
            now,
            &Event::WorkflowUpdated(WorkflowUpdated {
                workflow_id: "wf".into(),
                settings: settings("b"),
            }),
        );
        assert_eq!(w.get("wf").unwrap().settings.name, "b");
        w.apply(
            3,
            now,
            &Event::WorkflowDeleted(WorkflowDeleted {
                workflow_id: "wf".into(),
            }),
        );
        assert!(w.get("wf").is_none());
        assert_eq!(w.last_seq("wf"), 3, "a deleted id remembers its last sequence");
    }
}
