//! The caller's project as the vendor facades need it: its stable id (IBM instance CRN, Pasqal
//! `project_id`), its usage against its quota (rule 13), and the signing keys the facades share
//! across replicas through the database.

use crate::auth::Principal;
use crate::error::{Result, ServiceError};
use crate::Service;
use chrono::{DateTime, Utc};
use rand::RngCore;
use uuid::Uuid;

/// A project, with its usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectView {
    pub name: String,
    /// Stable for the project's life; never reused.
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// Device seconds allowed; `None` = unlimited.
    pub quota_seconds: Option<f64>,
    /// Device seconds used so far.
    pub used_seconds: f64,
}

impl Service {
    /// The caller's project.
    pub async fn my_project(&self, who: &Principal) -> Result<ProjectView> {
        let mut conn = self.pool.acquire().await?;
        let (row, used_seconds) = qcloud_store::projects::by_name_with_usage(&mut conn, &who.project)
            .await?
            .ok_or_else(|| ServiceError::not_found("project", &who.project))?;
        Ok(ProjectView {
            name: row.name,
            id: row.id,
            created_at: row.created_at,
            quota_seconds: row.quota_seconds,
            used_seconds,
        })
    }

    /// The secret stored under `name` (at least 32 random bytes), created on first use. Every
    /// replica reads the same one.
    pub async fn signing_key(&self, name: &str) -> Result<Vec<u8>> {
        let mut candidate = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut candidate);
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::projects::signing_key(&mut conn, name, &candidate).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServiceConfig;

    #[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
    async fn project_ids_are_stable_and_distinct(pool: qcloud_store::PgPool) {
        let svc = Service::new(pool, ServiceConfig::default());
        let a = svc.create_token("alpha", "ann", false).await.unwrap();
        let b = svc.create_token("beta", "bob", false).await.unwrap();
        let pa = svc.authenticate(&a).await.unwrap();
        let pb = svc.authenticate(&b).await.unwrap();
        let first = svc.my_project(&pa).await.unwrap();
        assert_eq!(first.name, "alpha");
        assert_eq!(first.used_seconds, 0.0);
        assert_eq!(svc.my_project(&pa).await.unwrap().id, first.id);
        assert_ne!(svc.my_project(&pb).await.unwrap().id, first.id);
    }

    #[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
    async fn every_replica_reads_the_same_signing_key(pool: qcloud_store::PgPool) {
        let one = Service::new(pool.clone(), ServiceConfig::default());
        let two = Service::new(pool, ServiceConfig::default());
        let (k1, k2) = tokio::join!(one.signing_key("ibm_jwt"), two.signing_key("ibm_jwt"));
        let (k1, k2) = (k1.unwrap(), k2.unwrap());
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), 32);
        assert_ne!(one.signing_key("other").await.unwrap(), k1);
    }
}
