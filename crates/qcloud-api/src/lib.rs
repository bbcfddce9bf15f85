//! qcloud-api
