//! Robot presets: what a client of one kind sends, mapped onto the policy's cameras, state and
//! prompt, and the action chunk mapped back into the space that client expects.
//!
//! `spear` is SPEAR-1's native schema: `{"images": {CAMERA: frame}, "state": [state_dim],
//! "prompt": str}` with the cameras named as the policy's `policy.json` names them (`main`,
//! `wrist`), frames uint8 (0–255) or float (0–1), HWC or CHW, any size; actions come back as
//! `[horizon, 8]`: translation delta in metres in the base frame, rotation delta in the
//! end-effector frame as a unit quaternion `(w, x, y, z)`, gripper command (≥ 0.5 closes).
//! The server refuses to start when the checkpoint's action space is not the preset's.

use spear_policy::{ChannelOrder, Frame, Pixels, RawObservation};

use crate::openpi::{self, NormStats};
use crate::wire::{Array, Dtype, Item};

/// A client schema the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// SPEAR-1's native schema (end-effector pose state, end-effector delta actions).
    Spear,
    /// openpi's DROID client (`examples/droid/main.py`): an exterior and a wrist camera, 7 joint
    /// positions and the gripper's; 8 actions per step (joint velocities and gripper position) from
    /// a π0 checkpoint with its `norm_stats.json`, through openpi's DROID transforms.
    Droid,
    /// openpi's LIBERO client (`examples/libero/main.py`): an agent-view and a wrist camera and the
    /// 8-value end-effector state; 7 actions per step from a π0 checkpoint through openpi's
    /// `pi0_libero` transforms (the first 6 of each action made absolute by adding the state).
    Libero,
    /// openpi's ALOHA clients (`examples/aloha_real`): `images` `{cam_high, cam_low?,
    /// cam_left_wrist?, cam_right_wrist?}` (CHW), the 14-value `state` of two arms; 14 absolute
    /// joint positions per step from a π0 checkpoint through openpi's `pi0_aloha` transforms
    /// (joint signs flipped and grippers converted into π0's space and back, the arms' joints
    /// predicted as deltas and made absolute by adding the state).
    Aloha,
    /// openpi's simulated ALOHA client (`examples/aloha_sim`) with `pi0_aloha_sim`'s transforms:
    /// as `aloha`, but the actions are absolute already and the prompt defaults to "Transfer cube".
    AlohaSim,
}

/// The checkpoint facts a preset is checked against and describes.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyFacts {
    /// A name for the metadata (the checkpoint folder's name).
    pub model: String,
    /// Camera names in the model's order.
    pub cameras: Vec<String>,
    /// State values the model takes.
    pub state_dim: usize,
    /// Actions per chunk.
    pub horizon: usize,
    /// Values per action.
    pub action_dim: usize,
    /// Rate of the chunk's actions, Hz, when the checkpoint records it.
    pub rate_hz: Option<f64>,
    /// Whether the checkpoint carries its normalisers (actions come back in robot units).
    pub in_robot_units: bool,
    /// Whether it is a π0 checkpoint (actions padded to 32 in its training robot's space).
    pub pi0: bool,
    /// openpi's normalisation statistics, for π0 checkpoints.
    pub norm_stats: Option<NormStats>,
    /// The instruction for clients that send none (openpi's `--default_prompt`); a client's own
    /// `prompt` wins.
    pub default_prompt: Option<String>,
}

/// DROID's keys, as `examples/droid/main.py` sends them.
const DROID_BASE: &str = "observation/exterior_image_1_left";
const DROID_WRIST: &str = "observation/wrist_image_left";
const DROID_JOINTS: &str = "observation/joint_position";
const DROID_GRIPPER: &str = "observation/gripper_position";
/// LIBERO's keys, as `examples/libero/main.py` sends them.
const LIBERO_BASE: &str = "observation/image";
const LIBERO_WRIST: &str = "observation/wrist_image";
const LIBERO_STATE: &str = "observation/state";
/// LIBERO's action (openpi's `LiberoOutputs` keeps the first 7 values).
const LIBERO_ACTION: [&str; 7] = ["x", "y", "z", "ax", "ay", "az", "gripper"];
/// `pi0_libero`'s `AbsoluteActions` mask (`make_bool_mask(6, -1)`): the state is added to the first 6.
const LIBERO_ABSOLUTE: usize = 6;

/// DROID's action: 7 joint velocities and the gripper position (openpi's `DroidOutputs` keeps the
/// first 8 values of the unnormalised action).
const DROID_ACTION: [&str; 8] =
    ["joint_0", "joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"];

/// ALOHA's cameras, as its clients name them in `images` (`cam_low` is accepted and unused, as
/// in openpi's `AlohaInputs`).
const ALOHA_CAMERAS: [&str; 4] = ["cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist"];
/// ALOHA's state and action: per arm 6 joints then the gripper, left arm first.
const ALOHA_ACTION: [&str; 14] = [
    "left_waist",
    "left_shoulder",
    "left_elbow",
    "left_forearm_roll",
    "left_wrist_angle",
    "left_wrist_rotate",
    "left_gripper",
    "right_waist",
    "right_shoulder",
    "right_elbow",
    "right_forearm_roll",
    "right_wrist_angle",
    "right_wrist_rotate",
    "right_gripper",
];
/// openpi's `_joint_flip_mask`: ALOHA's joint signs against π0's.
const ALOHA_FLIP: [f64; 14] = [1., -1., -1., 1., 1., 1., 1., 1., -1., -1., 1., 1., 1., 1.];
/// The grippers' places in ALOHA's state and action.
const ALOHA_GRIPPERS: [usize; 2] = [6, 13];
/// `pi0_aloha`'s policy metadata: the arm pose the real client resets to.
const ALOHA_RESET_POSE: [f64; 6] = [0.0, -1.5, 1.5, 0.0, 0.0, 0.0];
/// `pi0_aloha_sim`'s default prompt.
const ALOHA_SIM_PROMPT: &str = "Transfer cube";

/// SPEAR-1's action layout.
const SPEAR_ACTION: [&str; 8] = ["x", "y", "z", "qw", "qx", "qy", "qz", "gripper"];

impl Preset {
    /// Its name on the command line and in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Spear => "spear",
            Preset::Droid => "droid",
            Preset::Libero => "libero",
            Preset::Aloha => "aloha",
            Preset::AlohaSim => "aloha-sim",
        }
    }

    /// The names of the values of one action as this preset's clients receive it.
    fn action_layout(self) -> &'static [&'static str] {
        match self {
            Preset::Spear => &SPEAR_ACTION,
            Preset::Droid => &DROID_ACTION,
            Preset::Libero => &LIBERO_ACTION,
            Preset::Aloha | Preset::AlohaSim => &ALOHA_ACTION,
        }
    }

    /// The rate openpi's example client of this robot steps through a chunk at, Hz, for
    /// checkpoints that record none (π0's): DROID's 15 (`DROID_CONTROL_FREQUENCY`), ALOHA's 50
    /// (the runtime's `max_hz`); LIBERO's simulation steps as fast as the policy answers.
    fn client_rate_hz(self) -> Option<f64> {
        match self {
            Preset::Droid => Some(15.0),
            Preset::Aloha | Preset::AlohaSim => Some(50.0),
            Preset::Spear | Preset::Libero => None,
        }
    }

    /// Why `policy` cannot be served to this preset's clients, if it cannot.
    pub fn check(self, policy: &PolicyFacts) -> Result<(), String> {
        match self {
            Preset::Spear => {
                if policy.pi0 {
                    return Err(format!(
                        "{} is a π0 checkpoint: its actions are in the space of the robot it was trained on, \
                         not SPEAR-1's end-effector deltas; serve it with that robot's preset",
                        policy.model
                    ));
                }
                if policy.action_dim != self.action_layout().len() {
                    return Err(format!(
                        "{} returns {}-value actions; the spear preset sends SPEAR-1's 8 ({})",
                        policy.model,
                        policy.action_dim,
                        SPEAR_ACTION.join(", ")
                    ));
                }
                if !policy.in_robot_units {
                    return Err(format!(
                        "{} has no normalization.json: its actions would be normalised values, not metres; \
                         serve an export of `spear train vla`",
                        policy.model
                    ));
                }
                Ok(())
            }
            Preset::Droid | Preset::Libero | Preset::Aloha | Preset::AlohaSim => {
                // The state values each robot sends. DROID: 7 joints and the gripper; LIBERO:
                // position, axis-angle and 2 gripper joints; ALOHA: per arm 6 joints and the gripper.
                let (robot, expects, sent) = match self {
                    Preset::Droid => ("DROID", "joint velocities", 8),
                    Preset::Libero => {
                        ("LIBERO", "controller-normalised end-effector deltas with axis-angle rotations", 8)
                    }
                    _ => ("ALOHA", "absolute joint positions of two arms", ALOHA_ACTION.len()),
                };
                let returned = self.action_layout().len();
                if !policy.pi0 {
                    return Err(format!(
                        "{} is a SPEAR-1 export: it answers with end-effector deltas in metres and quaternions, \
                         and {robot}'s client executes {expects}; serve it with --robot spear",
                        policy.model
                    ));
                }
                let Some(stats) = &policy.norm_stats else {
                    return Err(format!(
                        "{} has no norm_stats.json: openpi's {robot} policy normalises with the checkpoint's \
                         statistics (assets/<robot>/norm_stats.json); pass it with --norm-stats",
                        policy.model
                    ));
                };
                if policy.cameras.len() != 3 {
                    return Err(format!(
                        "{} takes {} cameras; openpi's π0 takes 3",
                        policy.model,
                        policy.cameras.len()
                    ));
                }
                let narrow = |what: &str, n: usize, theirs: usize| {
                    format!("the model's {what} ({n} values) is narrower than {robot}'s {theirs}")
                };
                if policy.state_dim < sent {
                    return Err(narrow("state", policy.state_dim, sent));
                }
                if policy.action_dim < returned {
                    return Err(narrow("action", policy.action_dim, returned));
                }
                if stats.state.mean.len() < sent {
                    return Err(format!(
                        "norm_stats.json describes {} state values; {robot} sends {sent}",
                        stats.state.mean.len()
                    ));
                }
                if stats.actions.mean.len() > policy.action_dim {
                    return Err(format!(
                        "norm_stats.json describes {} action values; the model returns {}",
                        stats.actions.mean.len(),
                        policy.action_dim
                    ));
                }
                Ok(())
            }
        }
    }

    /// The metadata frame sent on connection.
    pub fn metadata(self, policy: &PolicyFacts) -> Item {
        let strs = |v: &[&str]| Item::List(v.iter().map(|s| Item::Str((*s).into())).collect());
        let mut entries = vec![
            ("model".to_string(), Item::Str(policy.model.clone())),
            ("robot".to_string(), Item::Str(self.name().into())),
            ("horizon".to_string(), Item::Int(policy.horizon as i64)),
            ("action_dim".to_string(), Item::Int(self.action_layout().len() as i64)),
            ("action_layout".to_string(), strs(self.action_layout())),
        ];
        match self {
            Preset::Spear => {
                entries.extend([
                    (
                        "action_units".to_string(),
                        Item::Str(
                            "translation delta in metres in the robot base frame; rotation delta in the \
                             end-effector frame as a unit quaternion (w, x, y, z); gripper command, >= 0.5 closes"
                                .into(),
                        ),
                    ),
                    ("state_dim".to_string(), Item::Int(policy.state_dim as i64)),
                    (
                        "state_layout".to_string(),
                        strs(&["x", "y", "z", "qw", "qx", "qy", "qz", "gripper_closedness"]),
                    ),
                    (
                        "cameras".to_string(),
                        Item::List(policy.cameras.iter().map(|c| Item::Str(c.clone())).collect()),
                    ),
                    (
                        "images".to_string(),
                        Item::Str("uint8 (0-255) or float (0-1), HWC or CHW, any size".into()),
                    ),
                ]);
            }
            Preset::Droid => {
                entries.extend([
                    (
                        "action_units".to_string(),
                        Item::Str(
                            "as openpi's DROID policy returns them: joint velocities (7) and the gripper \
                             position (1), float64"
                                .into(),
                        ),
                    ),
                    ("cameras".to_string(), strs(&[DROID_BASE, DROID_WRIST])),
                ]);
            }
            Preset::Libero => {
                entries.extend([
                    (
                        "action_units".to_string(),
                        Item::Str(
                            "as openpi's pi0_libero policy returns them: the first 6 values with the state \
                             added (AbsoluteActions), then the gripper; float64"
                                .into(),
                        ),
                    ),
                    ("cameras".to_string(), strs(&[LIBERO_BASE, LIBERO_WRIST])),
                ]);
            }
            Preset::Aloha | Preset::AlohaSim => {
                let config = if self == Preset::Aloha { "pi0_aloha" } else { "pi0_aloha_sim" };
                entries.extend([
                    (
                        "action_units".to_string(),
                        Item::Str(format!(
                            "as openpi's {config} policy returns them: absolute joint positions in ALOHA's \
                             signs (radians) and gripper positions, per arm 6 joints then the gripper; float64"
                        )),
                    ),
                    ("cameras".to_string(), strs(&ALOHA_CAMERAS)),
                    ("images".to_string(), Item::Str("a dict of camera to frame, CHW, uint8 or float".into())),
                ]);
                if self == Preset::Aloha {
                    let pose = ALOHA_RESET_POSE.iter().map(|&v| number_item(v)).collect();
                    entries.push(("reset_pose".to_string(), Item::List(pose)));
                }
            }
        }
        let rate = policy.rate_hz.or(self.client_rate_hz());
        entries.push(("rate_hz".to_string(), rate.map_or(Item::Nil, Item::Float)));
        Item::Map(entries)
    }

    /// The policy's observation from a client's message, or what is wrong with it (naming the key).
    pub fn observation(self, message: &Item, policy: &PolicyFacts) -> Result<RawObservation, String> {
        let Item::Map(entries) = message else {
            return Err(format!("the observation is {}, not a dict", message.kind()));
        };
        match self {
            Preset::Spear => {
                expect_keys(entries, &["images", "state"], &["prompt"], "the observation")?;
                let images = message.get("images").expect("checked");
                let Item::Map(entries) = images else {
                    return Err("`images` is not a dict of camera name to frame".into());
                };
                let names: Vec<&str> = policy.cameras.iter().map(String::as_str).collect();
                expect_keys(entries, &[], &names, "`images`")?;
                let cameras = names
                    .iter()
                    .map(|name| {
                        images.get(name).map(|frame| frame_of(frame, &format!("images.{name}"))).transpose()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if cameras.iter().all(Option::is_none) {
                    return Err(format!("`images` holds no frame (cameras: {})", names.join(", ")));
                }
                let state = numbers_f32(message.get("state").expect("checked"), "state")?;
                if state.len() != policy.state_dim {
                    return Err(format!(
                        "`state` has {} values; this policy takes {} ({})",
                        state.len(),
                        policy.state_dim,
                        "x, y, z, qw, qx, qy, qz, gripper closedness"
                    ));
                }
                Ok(RawObservation { cameras, state, prompt: self.prompt(message, policy)? })
            }
            Preset::Droid => {
                let keys = [DROID_BASE, DROID_WRIST, DROID_JOINTS, DROID_GRIPPER];
                expect_keys(entries, &keys, &["prompt"], "the observation")?;
                let joints = numbers(message.get(DROID_JOINTS).expect("checked"), DROID_JOINTS)?;
                let gripper = numbers(message.get(DROID_GRIPPER).expect("checked"), DROID_GRIPPER)?;
                if joints.len() != 7 || gripper.len() != 1 {
                    return Err(format!(
                        "`{DROID_JOINTS}` has {} values and `{DROID_GRIPPER}` {}; DROID sends 7 and 1",
                        joints.len(),
                        gripper.len()
                    ));
                }
                let cameras =
                    vec![Some(pi0_frame(message, DROID_BASE)?), Some(pi0_frame(message, DROID_WRIST)?), None];
                self.pi0_observation(message, policy, cameras, &[joints, gripper].concat())
            }
            Preset::Libero => {
                let keys = [LIBERO_BASE, LIBERO_WRIST, LIBERO_STATE];
                expect_keys(entries, &keys, &["prompt"], "the observation")?;
                let state = numbers(message.get(LIBERO_STATE).expect("checked"), LIBERO_STATE)?;
                if state.len() != 8 {
                    return Err(format!(
                        "`{LIBERO_STATE}` has {} values; LIBERO sends 8 (position, axis-angle, 2 gripper joints)",
                        state.len()
                    ));
                }
                let cameras = vec![
                    Some(pi0_frame(message, LIBERO_BASE)?),
                    Some(pi0_frame(message, LIBERO_WRIST)?),
                    None,
                ];
                self.pi0_observation(message, policy, cameras, &state)
            }
            Preset::Aloha | Preset::AlohaSim => {
                expect_keys(entries, &["images", "state"], &["prompt"], "the observation")?;
                let images = message.get("images").expect("checked");
                let Item::Map(frames) = images else {
                    return Err("`images` is not a dict of camera name to frame".into());
                };
                expect_keys(frames, &[ALOHA_CAMERAS[0]], &ALOHA_CAMERAS[1..], "`images`")?;
                // π0's slots: base ← cam_high, left wrist ← cam_left_wrist, right wrist ←
                // cam_right_wrist (an absent wrist camera is masked).
                let cameras = ["cam_high", "cam_left_wrist", "cam_right_wrist"]
                    .iter()
                    .map(|name| images.get(name).map(|_| pi0_frame(images, name)).transpose())
                    .collect::<Result<Vec<_>, _>>()?;
                let mut state = numbers(message.get("state").expect("checked"), "state")?;
                if state.len() != ALOHA_ACTION.len() {
                    return Err(format!(
                        "`state` has {} values; ALOHA sends 14 (per arm 6 joints and the gripper)",
                        state.len()
                    ));
                }
                // openpi's `_decode_state`: into π0's joint signs and gripper angles.
                state.iter_mut().zip(ALOHA_FLIP).for_each(|(s, flip)| *s *= flip);
                for g in ALOHA_GRIPPERS {
                    state[g] = gripper_to_angular(state[g]);
                }
                self.pi0_observation(message, policy, cameras, &state)
            }
        }
    }

    /// openpi's π0 inputs from the robot's frames in π0's camera slots and its `state` in π0's
    /// space: the state normalised with the checkpoint's statistics and padded.
    fn pi0_observation(
        self,
        message: &Item,
        policy: &PolicyFacts,
        cameras: Vec<Option<Frame>>,
        state: &[f64],
    ) -> Result<RawObservation, String> {
        let stats = policy.norm_stats.as_ref().expect("checked before serving");
        let state = stats.normalize_state(state, policy.state_dim)?;
        Ok(RawObservation { cameras, state, prompt: self.prompt(message, policy)? })
    }

    /// The observation's `prompt` (a str, or bytes of UTF-8 as openpi's DROID client may send),
    /// else the server's default, else the preset's (`aloha-sim`: openpi's "Transfer cube").
    fn prompt(self, message: &Item, policy: &PolicyFacts) -> Result<String, String> {
        match message.get("prompt") {
            Some(Item::Str(prompt)) => Ok(prompt.clone()),
            Some(Item::Bytes(bytes)) => {
                String::from_utf8(bytes.clone()).map_err(|_| "`prompt` is bytes that are not UTF-8".into())
            }
            Some(other) => Err(format!("`prompt` is {}, not a str", other.kind())),
            None => policy
                .default_prompt
                .clone()
                .or_else(|| (self == Preset::AlohaSim).then(|| ALOHA_SIM_PROMPT.into()))
                .ok_or_else(|| {
                    "the observation has no `prompt` and the server has no default (spear serve --default-prompt)"
                        .into()
                }),
        }
    }

    /// An observation of this preset's shape for the server described by `metadata` (its first
    /// frame): 224×224 frames with a gradient, a plausible state, an instruction. For probes and
    /// benchmarks.
    pub fn example_observation(self, metadata: &Item) -> Result<Item, String> {
        let frame = |h: usize, w: usize| {
            let data = (0..h * w * 3).map(|i| ((i / 3) % w * 255 / w.max(1)) as u8).collect();
            Item::Array(Array { dtype: Dtype::U8, shape: vec![h, w, 3], data })
        };
        match self {
            Preset::Spear => {
                let Some(Item::List(cameras)) = metadata.get("cameras") else {
                    return Err("the metadata lists no `cameras`: is this a spear preset server?".into());
                };
                let Some(&Item::Int(state_dim)) = metadata.get("state_dim") else {
                    return Err("the metadata has no `state_dim`".into());
                };
                let images = cameras
                    .iter()
                    .map(|c| match c {
                        Item::Str(name) => Ok((name.clone(), frame(224, 224))),
                        other => Err(format!("a camera name that is {}", other.kind())),
                    })
                    .collect::<Result<_, _>>()?;
                let mut state = vec![0.0f32; state_dim.max(0) as usize];
                // At 0.5 m in front of the base, 20 cm up, upright (w = 1), gripper open.
                for (i, v) in [0.5, 0.0, 0.2, 1.0].into_iter().enumerate().take(state.len()) {
                    state[i] = v;
                }
                Ok(Item::Map(vec![
                    ("images".into(), Item::Map(images)),
                    ("state".into(), Item::Array(Array::f32(vec![state.len()], &state))),
                    ("prompt".into(), Item::Str("pick up the red block".into())),
                ]))
            }
            Preset::Droid => Ok(Item::Map(vec![
                (DROID_BASE.into(), frame(224, 224)),
                (DROID_WRIST.into(), frame(224, 224)),
                (
                    DROID_JOINTS.into(),
                    Item::Array(Array::f64(vec![7], &[0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.8])),
                ),
                (DROID_GRIPPER.into(), Item::Array(Array::f64(vec![1], &[0.0]))),
                ("prompt".into(), Item::Str("pick up the red block".into())),
            ])),
            Preset::Libero => Ok(Item::Map(vec![
                (LIBERO_BASE.into(), frame(224, 224)),
                (LIBERO_WRIST.into(), frame(224, 224)),
                (
                    LIBERO_STATE.into(),
                    Item::Array(Array::f64(vec![8], &[-0.2, 0.0, 1.1, 3.1, 0.0, 0.0, 0.04, -0.04])),
                ),
                ("prompt".into(), Item::Str("put the bowl on the plate".into())),
            ])),
            Preset::Aloha | Preset::AlohaSim => {
                let chw = |h: usize, w: usize| {
                    let data = (0..3 * h * w).map(|i| (i % w * 255 / w.max(1)) as u8).collect();
                    Item::Array(Array { dtype: Dtype::U8, shape: vec![3, h, w], data })
                };
                let images = ["cam_high", "cam_left_wrist", "cam_right_wrist"]
                    .iter()
                    .map(|name| (name.to_string(), chw(224, 224)))
                    .collect();
                // Both arms near openpi's reset pose, grippers half open; no prompt, as ALOHA's
                // clients send none (the server's default applies).
                let arm = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.5];
                Ok(Item::Map(vec![
                    ("images".into(), Item::Map(images)),
                    ("state".into(), Item::Array(Array::f64(vec![14], &[arm, arm].concat()))),
                ]))
            }
        }
    }

    /// The chunk as the client expects it: `[horizon, dim]`, float32 for `spear`; for `droid`
    /// openpi's `Unnormalize` then the first 8 values, in float64 as openpi returns them; for
    /// `libero` the same with the unnormalised `state` (the normalised one the model saw, as
    /// openpi's output path has it) added to the first 6 values, then the first 7; for `aloha` the
    /// state added to the 12 joints, then the first 14 in ALOHA's signs and gripper units
    /// (`aloha-sim`: nothing added).
    pub fn actions(self, chunk: &[Vec<f32>], policy: &PolicyFacts, state: &[f32]) -> Array {
        match self {
            Preset::Spear => {
                let dim = chunk.first().map_or(0, Vec::len);
                let values: Vec<f32> = chunk.iter().flatten().copied().collect();
                Array::f32(vec![chunk.len(), dim], &values)
            }
            Preset::Droid => {
                let stats = policy.norm_stats.as_ref().expect("checked before serving");
                let dim = DROID_ACTION.len();
                let values: Vec<f64> =
                    chunk.iter().flat_map(|a| stats.unnormalize_action(a).into_iter().take(dim)).collect();
                Array::f64(vec![chunk.len(), dim], &values)
            }
            Preset::Libero => {
                let stats = policy.norm_stats.as_ref().expect("checked before serving");
                let state = stats.unnormalize_state(state);
                let dim = LIBERO_ACTION.len();
                let values: Vec<f64> = chunk
                    .iter()
                    .flat_map(|a| {
                        let mut action = stats.unnormalize_action(a);
                        action.iter_mut().zip(&state).take(LIBERO_ABSOLUTE).for_each(|(x, s)| *x += s);
                        action.into_iter().take(dim)
                    })
                    .collect();
                Array::f64(vec![chunk.len(), dim], &values)
            }
            Preset::Aloha | Preset::AlohaSim => {
                let stats = policy.norm_stats.as_ref().expect("checked before serving");
                let state = stats.unnormalize_state(state);
                let dim = ALOHA_ACTION.len();
                let values: Vec<f64> = chunk
                    .iter()
                    .flat_map(|a| {
                        let mut action = stats.unnormalize_action(a);
                        action.truncate(dim);
                        if self == Preset::Aloha {
                            // AbsoluteActions(make_bool_mask(6, -1, 6, -1)): the joints, not the grippers.
                            for (i, (x, s)) in action.iter_mut().zip(&state).enumerate() {
                                if !ALOHA_GRIPPERS.contains(&i) {
                                    *x += s;
                                }
                            }
                        }
                        // `_encode_actions`: back into ALOHA's signs and gripper joints.
                        action.iter_mut().zip(ALOHA_FLIP).for_each(|(x, flip)| *x *= flip);
                        for g in ALOHA_GRIPPERS {
                            action[g] = gripper_from_angular(action[g]);
                        }
                        action
                    })
                    .collect();
                Array::f64(vec![chunk.len(), dim], &values)
            }
        }
    }
}

/// A frame of `key` in `message` as openpi's robots parse it (`_parse_image`).
fn pi0_frame(message: &Item, key: &str) -> Result<Frame, String> {
    match message.get(key) {
        Some(Item::Array(a)) => openpi::parse_image(a, key),
        Some(other) => Err(format!("`{key}` is {}, not an image array", other.kind())),
        None => Err(format!("the observation has no `{key}`")),
    }
}

/// openpi's `_gripper_to_angular`: an ALOHA gripper position (normalised linear travel) as the
/// angle π0 was trained on, normalised.
fn gripper_to_angular(value: f64) -> f64 {
    let linear = value * (0.05800 - 0.01844) + 0.01844;
    let (arm, horn) = (0.036f64, 0.022f64);
    let angle =
        ((horn.powi(2) + linear.powi(2) - arm.powi(2)) / (2.0 * horn * linear)).clamp(-1.0, 1.0).asin();
    (angle - 0.5476) / (1.6296 - 0.5476)
}

/// openpi's `_gripper_from_angular`: π0's gripper value as ALOHA's gripper joint, normalised.
fn gripper_from_angular(value: f64) -> f64 {
    (value + 0.5476 - -0.6213) / (1.4910 - -0.6213)
}

/// A metadata number as msgpack writes a Python literal: integers as ints.
fn number_item(v: f64) -> Item {
    if v.fract() == 0.0 { Item::Int(v as i64) } else { Item::Float(v) }
}

/// Checks that `entries` holds every key of `required`, no key outside `required` and `optional`.
fn expect_keys(
    entries: &[(String, Item)],
    required: &[&str],
    optional: &[&str],
    what: &str,
) -> Result<(), String> {
    if let Some(missing) = required.iter().find(|k| !entries.iter().any(|(key, _)| key == *k)) {
        return Err(format!("{what} has no `{missing}`"));
    }
    if let Some((extra, _)) =
        entries.iter().find(|(k, _)| !required.contains(&k.as_str()) && !optional.contains(&k.as_str()))
    {
        let known: Vec<&str> = required.iter().chain(optional).copied().collect();
        return Err(format!("{what} has an unknown key `{extra}` (expected {})", known.join(", ")));
    }
    Ok(())
}

/// A frame from an image array: `[H, W]` grey, `[H, W, C]` (HWC) or `[C, H, W]` (CHW) with C of 1
/// to 4 (HWC when both would fit), uint8 or float in [0, 1].
fn frame_of(item: &Item, key: &str) -> Result<Frame, String> {
    let Item::Array(array) = item else {
        return Err(format!("`{key}` is {}, not an image array", item.kind()));
    };
    let channels = |c: usize| (1..=4).contains(&c);
    let (height, width, channels, order) = match array.shape[..] {
        [h, w] => (h, w, 1, ChannelOrder::Hwc),
        [h, w, c] if channels(c) => (h, w, c, ChannelOrder::Hwc),
        [c, h, w] if channels(c) => (h, w, c, ChannelOrder::Chw),
        _ => {
            return Err(format!(
                "`{key}` has shape {:?}; an image is [H, W], [H, W, C] or [C, H, W] with C of 1 to 4",
                array.shape
            ));
        }
    };
    let pixels = match array.dtype {
        Dtype::U8 => Pixels::U8(array.data.clone()),
        Dtype::F16 | Dtype::F32 | Dtype::F64 => {
            Pixels::F32(array.to_f64().into_iter().map(|v| v as f32).collect())
        }
        other => {
            return Err(format!("`{key}` is {}; images are uint8 (0-255) or float (0-1)", other.numpy()));
        }
    };
    // Checked and turned into 8-bit channels-last once, here, with the pipeline's own conversion;
    // the policy then only copies its bytes.
    let frame = Frame { height, width, channels, order, pixels };
    Ok(frame.to_image().map_err(|e| format!("`{key}`: {e}"))?.into())
}

/// A vector of finite numbers from an array (any rank), a list of numbers or one number.
fn numbers(item: &Item, key: &str) -> Result<Vec<f64>, String> {
    let values: Vec<f64> = match item {
        Item::Int(v) => vec![*v as f64],
        Item::Float(v) => vec![*v],
        Item::Array(a) if matches!(a.dtype, Dtype::Bool) => {
            return Err(format!("`{key}` is a bool array, not numbers"));
        }
        Item::Array(a) => a.to_f64(),
        Item::List(items) => items
            .iter()
            .map(|i| match i {
                Item::Int(v) => Ok(*v as f64),
                Item::Float(v) => Ok(*v),
                other => Err(format!("`{key}` holds {}, not a number", other.kind())),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("`{key}` is {}, not an array of numbers", other.kind())),
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("`{key}` value {i} is {}", values[i]));
    }
    Ok(values)
}

/// [`numbers`] as float32, each still finite.
fn numbers_f32(item: &Item, key: &str) -> Result<Vec<f32>, String> {
    let values: Vec<f32> = numbers(item, key)?.into_iter().map(|v| v as f32).collect();
    // A finite f64 beyond f32's range becomes infinite.
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("`{key}` value {i} is {} (as float32)", values[i]));
    }
    Ok(values)
}
