//! Prepaid credits: each customer's grants and what its queries drew from
//! them. A query of a prepaid customer draws its cost, as it is folded,
//! from the live grant that expires soonest, then the next; what no grant
//! covers is debt, which the next grant pays first. The balance at a
//! moment is what is left of the grants live then, less the debt.
//!
//! The fold also decides the credit webhooks, once each: `credits.low`
//! when the balance falls below the customer's threshold (again only
//! after it rose back to it), `credits.exhausted` when it reaches zero
//! (likewise), `credits.expired` for a grant that expired with credit
//! left, noticed at the customer's next grant or draw.

use chrono::{DateTime, Utc};
use ingest::events::{CreditsGranted, CreditsVoided};
use ingest::Micros;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub amount: Micros,
    /// Not drawn yet (frozen at expiry or void).
    pub remaining: Micros,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub voided_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    /// `credits.expired` was decided for it.
    expiry_told: bool,
    /// What was left of it right after it was granted (less debt it paid):
    /// what a replay of its request answers.
    pub first_remaining: Micros,
}

impl Grant {
    /// Whether it counts at `at`: not voided, not expired.
    pub fn live(&self, at: DateTime<Utc>) -> bool {
        self.voided_at.is_none() && self.expires_at.is_none_or(|e| e > at)
    }
}

/// One customer's credits.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// In the order granted.
    pub grants: Vec<Grant>,
    /// Drawn beyond every grant (the crossing query's overdraft).
    pub debt: Micros,
    low: bool,
    exhausted: bool,
    /// Crossings so far, which name the webhook messages.
    crossings: u64,
}

/// A credit webhook the fold decided: its type, message id and data.
pub type Message = (&'static str, String, serde_json::Value);

impl Account {
    /// What is left of the grants live at `at`, less the debt.
    pub fn balance(&self, at: DateTime<Utc>) -> Micros {
        let left = self
            .grants
            .iter()
            .filter(|g| g.live(at))
            .fold(Micros::ZERO, |sum, g| sum + g.remaining);
        left - self.debt
    }

    pub fn grant(&self, grant_id: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.id == grant_id)
    }

    /// The grant made with `idempotency_key`, if any.
    pub fn by_idempotency_key(&self, key: &str) -> Option<&Grant> {
        self.grants.iter().find(|g| g.idempotency_key.as_deref() == Some(key))
    }

    /// Draws `cost` at `ts`: from the live grant that expires soonest
    /// (those that never expire last, then by age), the rest as debt.
    fn draw(&mut self, ts: DateTime<Utc>, cost: Micros) {
        let mut left = cost;
        let mut order: Vec<usize> = (0..self.grants.len()).filter(|&i| self.grants[i].live(ts)).collect();
        order.sort_by_key(|&i| (self.grants[i].expires_at.is_none(), self.grants[i].expires_at, i));
        for i in order {
            if left <= Micros::ZERO {
                break;
            }
            let grant = &mut self.grants[i];
            let take = left.min(grant.remaining);
            grant.remaining = grant.remaining - take;
            left = left - take;
        }
        self.debt += left.max(Micros::ZERO);
    }

    /// The webhooks a change at `ts` decides, given the threshold.
    fn tell(&mut self, customer_id: &str, ts: DateTime<Utc>, threshold: Option<Micros>) -> Vec<Message> {
        let mut out = Vec::new();
        let balance = self.balance(ts);
        let mut say = |account: &mut Account, event_type: &'static str, data: serde_json::Value| {
            account.crossings += 1;
            let id = format!(
                "msg_credits_{}_{}",
                customer_id.replace([':', '.', '@'], "_"),
                account.crossings
            );
            out.push((event_type, id, data));
        };
        for i in 0..self.grants.len() {
            let g = &self.grants[i];
            if !g.expiry_told && g.voided_at.is_none() && g.expires_at.is_some_and(|e| e <= ts) {
                let data = serde_json::json!({
                    "customer_id": customer_id, "grant_id": g.id,
                    "expired_amount": usd(g.remaining), "expires_at": g.expires_at,
                    "balance": usd(balance),
                });
                self.grants[i].expiry_told = true;
                if self.grants[i].remaining > Micros::ZERO {
                    say(self, "credits.expired", data);
                }
            }
        }
        match threshold {
            Some(threshold) if balance < threshold && !self.low => {
                self.low = true;
                let data = serde_json::json!({"customer_id": customer_id, "balance": usd(balance), "low_balance_threshold": usd(threshold)});
                say(self, "credits.low", data);
            }
            Some(threshold) if balance >= threshold => self.low = false,
            _ => {}
        }
        if balance <= Micros::ZERO && !self.exhausted && !self.grants.is_empty() {
            self.exhausted = true;
            say(
                self,
                "credits.exhausted",
                serde_json::json!({"customer_id": customer_id, "balance": usd(balance)}),
            );
        } else if balance > Micros::ZERO {
            self.exhausted = false;
        }
        out
    }
}

fn usd(amount: Micros) -> f64 {
    amount.get() as f64 / Micros::PER_DOLLAR as f64
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credits {
    /// Shared with copies of the projection until changed.
    by_customer: BTreeMap<String, Arc<Account>>,
}

impl Credits {
    pub fn account(&self, customer_id: &str) -> Option<&Account> {
        self.by_customer.get(customer_id).map(|a| &**a)
    }

    /// The customer's balance at `at` (zero with no grants).
    pub fn balance(&self, customer_id: &str, at: DateTime<Utc>) -> Micros {
        self.account(customer_id).map_or(Micros::ZERO, |a| a.balance(at))
    }

    fn account_mut(&mut self, customer_id: &str) -> &mut Account {
        if !self.by_customer.contains_key(customer_id) {
            self.by_customer.insert(customer_id.to_owned(), Arc::default());
        }
        Arc::make_mut(self.by_customer.get_mut(customer_id).expect("inserted above"))
    }

    /// Folds a grant; a second grant with the same id (a retry) is
    /// nothing. Returns the webhooks it decides.
    pub(crate) fn granted(&mut self, ts: DateTime<Utc>, e: &CreditsGranted, threshold: Option<Micros>) -> Vec<Message> {
        let account = self.account_mut(&e.customer_id);
        if account.grant(&e.grant_id).is_some() {
            return Vec::new();
        }
        // Debt is paid from the new grant first.
        let paid = account.debt.min(e.amount);
        account.debt = account.debt - paid;
        account.grants.push(Grant {
            id: e.grant_id.clone(),
            amount: e.amount,
            remaining: e.amount - paid,
            expires_at: e.expires_at,
            created_at: ts,
            voided_at: None,
            description: e.description.clone(),
            idempotency_key: e.idempotency_key.clone(),
            request_hash: e.request_hash.clone(),
            expiry_told: false,
            first_remaining: e.amount - paid,
        });
        let balance = account.balance(ts);
        let granted = serde_json::json!({
            "customer_id": e.customer_id, "grant_id": e.grant_id, "amount": usd(e.amount),
            "expires_at": e.expires_at, "balance": usd(balance),
        });
        let mut out = vec![("credits.granted", format!("msg_grant_{}", e.grant_id), granted)];
        out.extend(account.tell(&e.customer_id, ts, threshold));
        out
    }

    /// A deleted customer's credits go with it: an id made again starts
    /// with none (and its old idempotency keys are forgotten).
    pub(crate) fn closed(&mut self, customer_id: &str) {
        self.by_customer.remove(customer_id);
    }

    pub(crate) fn voided(&mut self, ts: DateTime<Utc>, e: &CreditsVoided, threshold: Option<Micros>) -> Vec<Message> {
        let account = self.account_mut(&e.customer_id);
        match account.grants.iter_mut().find(|g| g.id == e.grant_id) {
            Some(g) if g.voided_at.is_none() => g.voided_at = Some(ts),
            _ => return Vec::new(),
        }
        account.tell(&e.customer_id, ts, threshold)
    }

    /// Draws a prepaid customer's query cost.
    pub(crate) fn drawn(
        &mut self,
        customer_id: &str,
        ts: DateTime<Utc>,
        cost: Micros,
        threshold: Option<Micros>,
    ) -> Vec<Message> {
        let account = self.account_mut(customer_id);
        account.draw(ts, cost);
        account.tell(customer_id, ts, threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, h, 0, 0).unwrap()
    }

    fn grant(id: &str, dollars: i64, expires_at: Option<DateTime<Utc>>) -> CreditsGranted {
        CreditsGranted {
            customer_id: "acme".into(),
            grant_id: id.into(),
            amount: Micros::new(dollars * Micros::PER_DOLLAR),
            expires_at,
            description: None,
            idempotency_key: None,
            request_hash: None,
        }
    }

    fn types(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.0).collect()
    }

    /// Draws come from the soonest-expiring grant; an expired grant stops
    /// counting at its instant; debt is paid by the next grant; each
    /// webhook is decided once per crossing.
    #[test]
    fn draws_expiry_debt_and_crossings() {
        let mut c = Credits::default();
        let low = Some(Micros::new(2 * Micros::PER_DOLLAR));
        assert_eq!(
            types(&c.granted(t(1), &grant("gr_late", 5, None), low)),
            ["credits.granted"]
        );
        assert!(
            c.granted(t(1), &grant("gr_late", 5, None), low).is_empty(),
            "a retry is nothing"
        );
        c.granted(t(1), &grant("gr_soon", 1, Some(t(5))), low);
        assert_eq!(c.balance("acme", t(2)), Micros::new(6 * Micros::PER_DOLLAR));
        c.drawn("acme", t(2), Micros::new(500_000), low);
        let a = c.account("acme").unwrap();
        assert_eq!(
            a.grant("gr_soon").unwrap().remaining,
            Micros::new(500_000),
            "the soonest-expiring first"
        );
        assert_eq!(
            c.balance("acme", t(5)),
            Micros::new(5 * Micros::PER_DOLLAR),
            "expired at its instant"
        );
        // Crossing below $2, once; then to zero and below: exhausted, once.
        let told = c.drawn("acme", t(6), Micros::new(3_500_000), low);
        assert_eq!(types(&told), ["credits.expired", "credits.low"]);
        assert!(c.drawn("acme", t(6), Micros::new(100_000), low).is_empty());
        let told = c.drawn("acme", t(6), Micros::new(1_500_000), low);
        assert_eq!(types(&told), ["credits.exhausted"]);
        assert_eq!(
            c.balance("acme", t(6)),
            Micros::new(-100_000),
            "the crossing query overdraws"
        );
        // A new grant pays the debt first, and re-arms both crossings.
        c.granted(t(7), &grant("gr_more", 10, None), low);
        assert_eq!(c.balance("acme", t(7)), Micros::new(9_900_000));
        assert_eq!(
            types(&c.drawn("acme", t(7), Micros::new(8 * Micros::PER_DOLLAR), low)),
            ["credits.low"]
        );
        // Voided: what is left no longer counts.
        c.voided(
            t(8),
            &CreditsVoided {
                customer_id: "acme".into(),
                grant_id: "gr_more".into(),
            },
            low,
        );
        assert_eq!(c.balance("acme", t(8)), Micros::ZERO);
    }
}
