//! The task model of taskd: ids, time, tasks and sub-tasks, their state machines and
//! progress counters, the device registry the registry task types act on, and the OTA
//! package records upgrades will use.
//!
//! This crate is the vocabulary every other layer speaks. It does no I/O, knows no wire
//! format (the dialects in `taskd-api` map these states to their own status words) and
//! knows no SQL (the stores persist these types). Everything here is a pure function of
//! its inputs, which is what lets the state machines be property-tested exhaustively.

pub mod clock;
pub mod device;
pub mod id;
pub mod operation;
pub mod ota;
pub mod progress;
pub mod state;
pub mod task;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use device::{
    AuthType, Device, DeviceGroup, DeviceStatus, DeviceUpdate, NewDevice, NewDeviceGroup,
    SecretType,
};
pub use id::{Id, IdParseError};
pub use operation::{IOTDA_INSTANCE_TYPES, OpService, OperateWindow, Operation, minute_of_day};
pub use ota::{NewOtaPackage, ObsLocation, OtaPackage, PackageType};
pub use progress::Progress;
pub use state::{ControlOp, SubTaskState, TaskState};
pub use task::{
    Credential, MAX_DOCUMENT_BYTES, NewSubTask, NewTask, NewTaskFile, RetryPolicy, SubTask, Task,
    TaskFile, TaskScope,
};
