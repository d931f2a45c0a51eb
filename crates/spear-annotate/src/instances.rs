//! Instance masks of one image, in whichever form the segmenter left them, and their labels:
//!
//! - `<key>.png` — an indexed PNG (palette or 8/16-bit grey): pixel value `k > 0` is instance
//!   `"k"`, 0 is background;
//! - `<key>/` — a folder of binary PNGs, one per instance, `<id>.png` (any value > 0 is set);
//! - `<key>.json` — a list (or `{"annotations": [...]}`) of objects with an `id` (else their
//!   position), an optional `label`, and a `segmentation` that is COCO RLE (`{"size": [h, w],
//!   "counts": "…" | [runs]}`, as SAM2 and COCO write it) or Ego-Exo4D's
//!   (`{"width", "height", "encodedMask"}`, LZString-wrapped COCO counts).
//!
//! Labels come from the labels file (`{"<key>": {"<id>": "label"}}`) or else from the JSON's
//! `label`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::masks::{Mask, Rle, lzstring_decompress_uri};
use crate::moge::{InputError, file_error, read_json, read_mask_png};

/// One object's mask and label.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Its id within the image (the pixel value of an indexed PNG, the file stem, the JSON id).
    pub id: String,
    /// Its semantic label, when known.
    pub label: Option<String>,
    /// Its mask, row-major; `None` for a format that is not supported (COCO polygons).
    pub mask: Option<Mask>,
}

/// Instance ids an indexed PNG may hold before it is taken for something else (a depth map).
pub const MAX_INDEXED_INSTANCES: usize = 1000;

/// Where the masks of image `key` are under `dir`, if anywhere.
pub fn find_masks(dir: &Path, key: &str) -> Option<PathBuf> {
    [dir.join(format!("{key}.png")), dir.join(format!("{key}.json")), dir.join(key)]
        .into_iter()
        .find(|p| p.is_file() || p.is_dir())
}

/// Reads the instances at `path` (one of the three forms, by its extension or being a folder),
/// in ascending id order for PNGs and file order for JSON. With `size` (height, width), a mask of
/// another size is an error found before it is decoded.
pub fn read_instances(path: &Path, size: Option<[usize; 2]>) -> Result<Vec<Instance>, InputError> {
    let check = |found: [usize; 2], file: &Path| match size {
        Some(expected) if expected != found => {
            Err(InputError::Size { path: file.to_path_buf(), found, expected })
        }
        _ => Ok(()),
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| file_error(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
            .collect();
        files.sort();
        return files
            .iter()
            .map(|file| {
                let (height, width, pixels) = read_mask_png(file)?;
                check([height, width], file)?;
                let id = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                Ok(Instance { id, label: None, mask: Some(Mask { height, width, pixels }) })
            })
            .collect();
    }
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => read_indexed_png(path, &check),
        Some("json") => read_json_instances(path, &check),
        _ => Err(file_error(path, "masks must be an indexed .png, a .json of RLEs or a folder of .png")),
    }
}

type SizeCheck<'a> = dyn Fn([usize; 2], &Path) -> Result<(), InputError> + 'a;

fn read_indexed_png(path: &Path, check: &SizeCheck<'_>) -> Result<Vec<Instance>, InputError> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    // Raw samples: palette indices stay indices.
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| file_error(path, e))?;
    let mut buffer = vec![0; reader.output_buffer_size().ok_or_else(|| file_error(path, "image too large"))?];
    let info = reader.next_frame(&mut buffer).map_err(|e| file_error(path, e))?;
    let (width, height) = (info.width as usize, info.height as usize);
    check([height, width], path)?;
    let values: Vec<u32> = match (info.color_type, info.bit_depth) {
        (png::ColorType::Indexed | png::ColorType::Grayscale, png::BitDepth::Eight) => (0..height)
            .flat_map(|r| buffer[r * info.line_size..][..width].iter().map(|&v| u32::from(v)))
            .collect(),
        (png::ColorType::Grayscale, png::BitDepth::Sixteen) => (0..height)
            .flat_map(|r| {
                buffer[r * info.line_size..][..2 * width]
                    .chunks_exact(2)
                    .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
            })
            .collect(),
        (colour, depth) => {
            return Err(file_error(
                path,
                format!("{colour:?} {depth:?}: an indexed mask must be 8-bit palette or 8/16-bit grey"),
            ));
        }
    };
    let mut ids: Vec<u32> = values.iter().copied().filter(|&v| v > 0).collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > MAX_INDEXED_INSTANCES {
        return Err(file_error(
            path,
            format!("{} distinct values: an indexed mask holds instance ids, not depth or colour", ids.len()),
        ));
    }
    Ok(ids
        .into_iter()
        .map(|id| Instance {
            id: id.to_string(),
            label: None,
            mask: Some(Mask { height, width, pixels: values.iter().map(|&v| v == id).collect() }),
        })
        .collect())
}

fn read_json_instances(path: &Path, check: &SizeCheck<'_>) -> Result<Vec<Instance>, InputError> {
    let json = read_json(path)?;
    let list = json
        .as_array()
        .or_else(|| json["annotations"].as_array())
        .ok_or_else(|| file_error(path, "expected a list of instances or {\"annotations\": [...]}"))?;
    list.iter()
        .enumerate()
        .map(|(i, object)| {
            let at = |problem: String| file_error(path, format!("instance {i}: {problem}"));
            let id = match &object["id"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Null => i.to_string(),
                other => return Err(at(format!("id {other} is not a string or number"))),
            };
            let label = object["label"].as_str().map(str::to_owned);
            let seg = object.get("segmentation").unwrap_or(object);
            if seg.is_array() {
                return Ok(Instance { id, label, mask: None });
            }
            let dim = |v: &Value, name: &str| {
                v.as_u64().map(|v| v as usize).ok_or_else(|| at(format!("no integer {name}")))
            };
            let (h, w) = if seg.get("encodedMask").is_some() {
                (dim(&seg["height"], "height")?, dim(&seg["width"], "width")?)
            } else {
                (dim(&seg["size"][0], "size[0] (height)")?, dim(&seg["size"][1], "size[1] (width)")?)
            };
            check([h, w], path)?;
            let rle = if let Some(encoded) = seg["encodedMask"].as_str() {
                let counts = lzstring_decompress_uri(encoded).map_err(|e| at(e.to_string()))?;
                Rle::from_compressed(h, w, &counts)
            } else {
                match &seg["counts"] {
                    Value::String(s) => Rle::from_compressed(h, w, s),
                    Value::Array(runs) => {
                        let runs = runs
                            .iter()
                            .map(|r| {
                                r.as_u64().ok_or_else(|| at("counts must be non-negative integers".into()))
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Rle::from_counts(h, w, runs)
                    }
                    _ => return Err(at("no RLE `counts`".into())),
                }
            }
            .map_err(|e| at(e.to_string()))?;
            Ok(Instance { id, label, mask: Some(rle.decode()) })
        })
        .collect()
}

/// The labels file: `{"<image key>": {"<instance id>": "label"}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(pub std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>);

impl Labels {
    /// Reads and checks the labels file.
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e))?;
        serde_json::from_str(&text).map(Self).map_err(|e| {
            file_error(path, format!("{e} (expected {{\"<image>\": {{\"<instance id>\": \"label\"}}}})"))
        })
    }

    /// The label of instance `id` of image `key`.
    pub fn get(&self, key: &str, id: &str) -> Option<&str> {
        self.0.get(key)?.get(id).map(String::as_str)
    }
}
