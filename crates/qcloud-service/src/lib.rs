//! qcloud-service
