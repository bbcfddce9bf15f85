//! Instance CRNs: every project is one IBM instance, named by a CRN derived from the project's
//! stable id, `crn:v1:qcloud:public:quantum-computing:local:a/<id hex>:<id>::`.

use uuid::Uuid;

/// The region field (CRN field 6). The client builds no URL from it when it is given a URL
/// resolver or an "experimental" URL.
pub const REGION: &str = "local";

/// The CRN of the project with stable id `id`.
pub fn of_project(id: Uuid) -> String {
    format!("crn:v1:qcloud:public:quantum-computing:{REGION}:a/{}:{id}::", id.simple())
}

/// The project id a CRN names, if it is one of ours.
pub fn project_id(crn: &str) -> Option<Uuid> {
    let fields: Vec<&str> = crn.trim().split(':').collect();
    if fields.len() < 8 || fields[0] != "crn" || fields[4] != "quantum-computing" {
        return None;
    }
    fields[7].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crns_round_trip_and_foreign_ones_name_nothing() {
        let id = Uuid::now_v7();
        let crn = of_project(id);
        assert!(crn.starts_with("crn:"));
        assert_eq!(crn.split(':').count(), 10);
        assert_eq!(project_id(&crn), Some(id));
        assert_eq!(project_id("crn:v1:bluemix:public:quantum-computing:us-east:a/x:local-instance::"), None);
        assert_eq!(project_id("not a crn"), None);
        assert_eq!(project_id(&crn.replace("quantum-computing", "kms")), None);
    }
}
