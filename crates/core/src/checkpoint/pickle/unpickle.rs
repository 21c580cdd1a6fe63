//! A restricted unpickler: pickle opcodes are interpreted into plain values, and the only
//! globals it resolves are torch's tensor-rebuild functions, storage types and dtypes, and
//! `collections.OrderedDict`. Nothing is imported or called.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::dtype::DType;

/// Nesting depth followed when collecting tensors out of nested dicts.
const MAX_DEPTH: usize = 32;
/// Dimensions of a tensor accepted (torch's own kernels stop at 25).
pub const MAX_RANK: usize = 64;
/// Work allowed per byte of pickle on what opcodes do not pay for one at a time: elements
/// copied or visited by calls (`OrderedDict` of a list, tensor metadata) and the bytes of the
/// dotted names built for tensors of nested dicts. One memoised container can be handed to
/// any number of calls, so without this a pickle of n bytes could make n^2 work.
pub const WORK_PER_BYTE: usize = 16;
/// Work allowed on top of [`WORK_PER_BYTE`], whatever the pickle's size.
pub const WORK_BASE: usize = 1 << 20;

/// What is left of a pickle's work allowance ([`WORK_PER_BYTE`], [`WORK_BASE`]).
#[derive(Clone, Copy, Debug)]
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn for_size(bytes: usize) -> Budget {
        let limit = bytes
            .saturating_mul(WORK_PER_BYTE)
            .saturating_add(WORK_BASE);
        Budget { left: limit, limit }
    }

    fn spend(&mut self, n: usize) -> Result<(), String> {
        self.left = self.left.checked_sub(n).ok_or_else(|| {
            format!(
                "the pickle needs more than {} units of work (element copies and name bytes; \
                 {WORK_PER_BYTE} per byte of pickle plus {WORK_BASE}): a small pickle describing \
                 enormous work, such as one container handed to many calls, is refused",
                self.limit
            )
        })?;
        Ok(())
    }
}

/// A storage as named by a persistent id.
#[derive(Debug, PartialEq)]
pub struct StorageRef {
    /// The zip entry `data/<key>` holding its bytes.
    pub key: String,
    /// Number of elements of the storage's own type.
    pub numel: u64,
    /// Bytes per element of the storage's own type (1 for `UntypedStorage`).
    pub elem_size: usize,
    /// The element type of a typed storage, `None` for `UntypedStorage`.
    pub dtype: Option<DType>,
}

/// A tensor rebuilt by one of torch's rebuild functions: a view into a storage.
#[derive(Debug)]
pub struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub dtype: DType,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
    /// torch's negative bit (`_neg_view`): the values are the negated stored ones.
    pub neg: bool,
    /// Why the tensor cannot be read, reported with its name once it is known.
    pub problem: Option<String>,
}

/// The globals the unpickler resolves.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TensorClass,
    ParameterClass,
    /// A typed storage class (`torch.FloatStorage`), `Err` with its name when its element
    /// type is not one this crate reads (complex, quantised).
    Storage(Result<DType, &'static str>),
    UntypedStorage,
    /// A torch dtype (`torch.float8_e4m3fn`), argument of `_rebuild_tensor_v3`.
    Dtype(Result<DType, &'static str>),
}

/// A pickled value.
#[derive(Clone, Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`: only ever compared, never used.
    BigInt,
    // Floats and bytes only appear in metadata, which is never interpreted.
    Float(#[allow(dead_code)] f64),
    Str(Rc<str>),
    Bytes(#[allow(dead_code)] Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) | Value::BigInt => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a class or function",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

impl Value {
    /// Whether dropping this value may drop other values.
    fn is_container(&self) -> bool {
        matches!(self, Value::Tuple(_) | Value::List(_) | Value::Dict(_))
    }

    /// Moves the containers held by this value, where this value is their only owner, into
    /// `work`, leaving `Value::None` (or nothing) in their place.
    fn detach_children(&mut self, work: &mut Vec<Value>) {
        let mut keep = |v: &mut Value| {
            if v.is_container() {
                work.push(std::mem::replace(v, Value::None));
            }
        };
        match self {
            Value::Tuple(items) => {
                if let Some(items) = Rc::get_mut(items) {
                    items.iter_mut().for_each(&mut keep);
                }
            }
            Value::List(items) => {
                if let Some(items) = Rc::get_mut(items) {
                    items.get_mut().iter_mut().for_each(&mut keep);
                }
            }
            Value::Dict(items) => {
                if let Some(items) = Rc::get_mut(items) {
                    for (k, v) in items.get_mut().iter_mut() {
                        keep(k);
                        keep(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Containers nest as deep as the pickle says (a few hundred kilobytes of `TUPLE1` opcodes
/// make a million levels), deeper than the stack allows a recursive drop to go: the
/// containers a value owns alone are taken apart one level at a time from a work list.
impl Drop for Value {
    fn drop(&mut self) {
        if !self.is_container() {
            return;
        }
        let mut work = Vec::new();
        self.detach_children(&mut work);
        while let Some(mut v) = work.pop() {
            v.detach_children(&mut work);
        }
    }
}

/// The root object of a pickle, opaque outside this module.
pub struct Root(
    Value,
    Budget,
    // Never read: held so that its drop frees the pickle's containers with the root.
    #[allow(dead_code)] Arena,
);

fn resolve_global(module: &str, name: &str) -> Option<Global> {
    use DType::*;
    let storage = |d| Some(Global::Storage(Ok(d)));
    let unreadable = |n| Some(Global::Storage(Err(n)));
    Some(match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => Global::RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") => Global::TensorClass,
        ("torch.nn.parameter", "Parameter") => Global::ParameterClass,
        ("torch", "UntypedStorage") | ("torch.storage", "UntypedStorage") => Global::UntypedStorage,
        ("torch", s) if s.ends_with("Storage") => {
            return match s {
                "DoubleStorage" => storage(F64),
                "FloatStorage" => storage(F32),
                "HalfStorage" => storage(F16),
                "BFloat16Storage" => storage(BF16),
                "LongStorage" => storage(I64),
                "IntStorage" => storage(I32),
                "ShortStorage" => storage(I16),
                "CharStorage" => storage(I8),
                "ByteStorage" => storage(U8),
                "BoolStorage" => storage(Bool),
                "ComplexDoubleStorage" => unreadable("torch.ComplexDoubleStorage"),
                "ComplexFloatStorage" => unreadable("torch.ComplexFloatStorage"),
                "QInt8Storage" => unreadable("torch.QInt8Storage"),
                "QInt32Storage" => unreadable("torch.QInt32Storage"),
                "QUInt8Storage" => unreadable("torch.QUInt8Storage"),
                "QUInt4x2Storage" => unreadable("torch.QUInt4x2Storage"),
                "QUInt2x4Storage" => unreadable("torch.QUInt2x4Storage"),
                _ => None,
            };
        }
        ("torch", d) => {
            let dtype = match d {
                "float64" | "double" => Ok(F64),
                "float32" | "float" => Ok(F32),
                "float16" | "half" => Ok(F16),
                "bfloat16" => Ok(BF16),
                "int64" | "long" => Ok(I64),
                "int32" | "int" => Ok(I32),
                "int16" | "short" => Ok(I16),
                "int8" => Ok(I8),
                "uint64" => Ok(U64),
                "uint32" => Ok(U32),
                "uint16" => Ok(U16),
                "uint8" => Ok(U8),
                "bool" => Ok(Bool),
                "float8_e4m3fn" => Ok(F8_E4M3),
                "float8_e5m2" => Ok(F8_E5M2),
                "float8_e4m3fnuz" => Err("torch.float8_e4m3fnuz"),
                "float8_e5m2fnuz" => Err("torch.float8_e5m2fnuz"),
                "float8_e8m0fnu" => Err("torch.float8_e8m0fnu"),
                "float4_e2m1fn_x2" => Err("torch.float4_e2m1fn_x2"),
                "complex32" => Err("torch.complex32"),
                "complex64" | "cfloat" => Err("torch.complex64"),
                "complex128" | "cdouble" => Err("torch.complex128"),
                _ => return None,
            };
            Global::Dtype(dtype)
        }
        _ => return None,
    })
}

/// Reads bytes of the pickle with bounds checks.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "truncated: {n} bytes wanted at byte {} of {}",
                    self.pos,
                    self.data.len()
                )
            })?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn len32(&mut self) -> Result<usize, String> {
        Ok(self.u32()? as usize)
    }
    fn len64(&mut self) -> Result<usize, String> {
        usize::try_from(self.u64()?).map_err(|_| "length too large".to_string())
    }
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated: unterminated GLOBAL line")?;
        let line = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name is not UTF-8")?;
        self.pos += n + 1;
        Ok(line)
    }
}

fn utf8(bytes: &[u8]) -> Result<Value, String> {
    std::str::from_utf8(bytes)
        .map(|s| Value::Str(Rc::from(s)))
        .map_err(|_| "string is not valid UTF-8".to_string())
}

/// Decodes a little-endian two's-complement integer of `bytes.len()` bytes.
fn long(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() > 8 {
        return Value::BigInt;
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = [if negative { 0xff } else { 0 }; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

/// Names of the opcodes, for messages.
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'L' => "LONG",
        b'P' => "PERSID",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'i' => "INST",
        b'o' => "OBJ",
        b'g' => "GET",
        b'p' => "PUT",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

struct Machine {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    storages: HashMap<String, Rc<StorageRef>>,
    budget: Budget,
    arena: Arena,
}

/// A list or dict the pickle built.
enum Shared {
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
}

/// Every list and dict a pickle built. Through the memo a pickle can put a list inside itself
/// (`DUP`, `APPEND`), a cycle that reference counting never frees: when the arena is dropped
/// it empties each of them, which breaks every cycle, so nothing a pickle builds outlives its
/// [`Root`] (or the failed [`unpickle`]). Tuples are built from existing values and cannot
/// close a cycle by themselves.
#[derive(Default)]
struct Arena(Vec<Shared>);

impl Drop for Arena {
    fn drop(&mut self) {
        for shared in self.0.drain(..) {
            // Taken out and dropped here; containers inside them are still held by the arena
            // (so their drop does not recurse) and are emptied in their turn.
            match shared {
                Shared::List(l) => drop(std::mem::take(&mut *l.borrow_mut())),
                Shared::Dict(d) => drop(std::mem::take(&mut *d.borrow_mut())),
            }
        }
    }
}

impl Machine {
    fn push_list(&mut self, items: Vec<Value>) {
        let l = Rc::new(RefCell::new(items));
        self.arena.0.push(Shared::List(l.clone()));
        self.stack.push(Value::List(l));
    }

    fn push_dict(&mut self, items: Vec<(Value, Value)>) {
        let d = Rc::new(RefCell::new(items));
        self.arena.0.push(Shared::Dict(d.clone()));
        self.stack.push(Value::Dict(d));
    }

    fn pop(&mut self) -> Result<Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("pops past a MARK".into());
        }
        self.stack
            .pop()
            .ok_or_else(|| "stack underflow".to_string())
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("reads past a MARK".into());
        }
        self.stack
            .last_mut()
            .ok_or_else(|| "stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let m = self.marks.pop().ok_or("no MARK on the stack")?;
        Ok(self.stack.split_off(m))
    }
    fn memo_get(&self, i: u64) -> Result<Value, String> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("memo entry {i} is empty"))
    }
    fn memo_put(&mut self, i: u64) -> Result<(), String> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }
}

fn uint(v: &Value, what: &str) -> Result<u64, String> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        Value::Bool(b) => Ok(*b as u64),
        Value::Int(i) => Err(format!("{what} should be a non-negative int, found {i}")),
        Value::BigInt => Err(format!("{what} is an integer beyond 64 bits")),
        other => Err(format!(
            "{what} should be a non-negative int, found {}",
            other.kind()
        )),
    }
}

fn uint_tuple(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    let rank = match v {
        Value::Tuple(items) => items.len(),
        Value::List(items) => items.borrow().len(),
        _ => 0,
    };
    if rank > MAX_RANK {
        return Err(format!(
            "{what} has {rank} dimensions, more than the {MAX_RANK} accepted"
        ));
    }
    match v {
        Value::Tuple(items) => items.iter().map(|x| uint(x, what)).collect(),
        Value::List(items) => items.borrow().iter().map(|x| uint(x, what)).collect(),
        other => Err(format!(
            "{what} should be a tuple of ints, found {}",
            other.kind()
        )),
    }
}

/// Builds the tensor of `_rebuild_tensor_v2/v3`; `dtype` is given for v3.
fn rebuild_tensor(args: &[Value], dtype: Option<&Value>) -> Result<Value, String> {
    let Value::Storage(storage) = &args[0] else {
        return Err(format!(
            "tensor rebuild expects a storage, found {}",
            args[0].kind()
        ));
    };
    let offset = uint(&args[1], "storage offset")?;
    let size = uint_tuple(&args[2], "size")?;
    let stride = uint_tuple(&args[3], "stride")?;
    let mut problem = None;
    let dtype = match (dtype, storage.dtype) {
        (None, Some(d)) => d,
        (None, None) => {
            return Err("_rebuild_tensor_v2 of an untyped storage".into());
        }
        (Some(Value::Global(Global::Dtype(Ok(d)))), _) => *d,
        (Some(Value::Global(Global::Dtype(Err(name)))), _) => {
            problem = Some(format!(
                "has dtype {name}, which this reader cannot represent"
            ));
            DType::U8
        }
        (Some(other), _) => {
            return Err(format!(
                "_rebuild_tensor_v3 expects a dtype, found {}",
                other.kind()
            ));
        }
    };
    Ok(Value::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        dtype,
        offset,
        size,
        stride,
        neg: false,
        problem,
    })))
}

/// Applies tensor metadata (`{"neg": bool, "conj": bool}`) to a rebuilt tensor; the
/// conjugate bit is a no-op on real values.
fn apply_metadata(
    tensor: Value,
    metadata: Option<&Value>,
    budget: &mut Budget,
) -> Result<Value, String> {
    let Value::Tensor(t) = &tensor else {
        return Ok(tensor);
    };
    let t = t.clone();
    drop(tensor);
    if let Some(Value::Dict(items)) = metadata {
        budget.spend(items.borrow().len())?;
    }
    let Some(Value::Dict(items)) = metadata else {
        return match metadata {
            None | Some(Value::None) => Ok(Value::Tensor(t)),
            Some(other) => Err(format!(
                "tensor metadata should be a dict, found {}",
                other.kind()
            )),
        };
    };
    let mut t = Rc::try_unwrap(t).unwrap_or_else(|rc| TensorRef {
        storage: rc.storage.clone(),
        dtype: rc.dtype,
        offset: rc.offset,
        size: rc.size.clone(),
        stride: rc.stride.clone(),
        neg: rc.neg,
        problem: rc.problem.clone(),
    });
    for (k, v) in items.borrow().iter() {
        match (k, v) {
            (Value::Str(k), Value::Bool(b)) if &**k == "neg" => t.neg = *b,
            (Value::Str(k), Value::Bool(_)) if &**k == "conj" => {}
            (Value::Str(k), _) => {
                t.problem = Some(format!(
                    "carries tensor metadata `{k}`, which is not supported"
                ));
            }
            _ => return Err("tensor metadata keys should be strings".into()),
        }
    }
    Ok(Value::Tensor(Rc::new(t)))
}

/// Calls an allowed global: the REDUCE opcode.
fn call(func: &Value, args: &Value, budget: &mut Budget) -> Result<Value, String> {
    let Value::Global(g) = func else {
        return Err(format!(
            "REDUCE calls {}, not a known function",
            func.kind()
        ));
    };
    let Value::Tuple(args) = args else {
        return Err(format!("REDUCE arguments are {}, not a tuple", args.kind()));
    };
    let arity = |lo: usize, hi: usize, name: &str| {
        if args.len() < lo || args.len() > hi {
            Err(format!("{name} called with {} arguments", args.len()))
        } else {
            Ok(())
        }
    };
    match g {
        Global::OrderedDict => {
            arity(0, 1, "OrderedDict")?;
            let mut items = Vec::new();
            if let Some(arg) = args.first() {
                let pairs: Vec<Value> = match arg {
                    Value::List(l) => {
                        budget.spend(l.borrow().len())?;
                        l.borrow().clone()
                    }
                    Value::Tuple(t) => {
                        budget.spend(t.len())?;
                        t.to_vec()
                    }
                    other => {
                        return Err(format!("OrderedDict of {}", other.kind()));
                    }
                };
                for p in pairs {
                    match &p {
                        Value::Tuple(kv) if kv.len() == 2 => {
                            items.push((kv[0].clone(), kv[1].clone()))
                        }
                        _ => return Err("OrderedDict of something other than pairs".into()),
                    }
                }
            }
            Ok(Value::Dict(Rc::new(RefCell::new(items))))
        }
        Global::RebuildTensorV2 => {
            arity(6, 7, "_rebuild_tensor_v2")?;
            let t = rebuild_tensor(args, None)?;
            apply_metadata(t, args.get(6), budget)
        }
        Global::RebuildTensorV3 => {
            arity(7, 8, "_rebuild_tensor_v3")?;
            let t = rebuild_tensor(args, Some(&args[6]))?;
            apply_metadata(t, args.get(7), budget)
        }
        Global::RebuildParameter | Global::RebuildParameterWithState => {
            let (lo, name) = if *g == Global::RebuildParameter {
                (3, "_rebuild_parameter")
            } else {
                (4, "_rebuild_parameter_with_state")
            };
            arity(lo, lo, name)?;
            match &args[0] {
                t @ Value::Tensor(_) => Ok(t.clone()),
                other => Err(format!("{name} of {}", other.kind())),
            }
        }
        Global::RebuildFromTypeV2 => {
            arity(4, 4, "_rebuild_from_type_v2")?;
            match &args[1] {
                Value::Global(Global::TensorClass | Global::ParameterClass) => {}
                other => {
                    return Err(format!(
                        "_rebuild_from_type_v2 into {}, not torch.Tensor or Parameter",
                        other.kind()
                    ));
                }
            }
            match &args[0] {
                Value::Global(
                    Global::RebuildTensorV2
                    | Global::RebuildTensorV3
                    | Global::RebuildParameter
                    | Global::RebuildParameterWithState,
                ) => call(&args[0], &args[2], budget),
                other => Err(format!("_rebuild_from_type_v2 calls {}", other.kind())),
            }
        }
        other => Err(format!(
            "REDUCE calls {other:?}, which is not callable here"
        )),
    }
}

/// Turns a persistent id `("storage", StorageType, key, location, numel)` into a storage.
fn persistent_load(
    pid: Value,
    storages: &mut HashMap<String, Rc<StorageRef>>,
) -> Result<Value, String> {
    let Value::Tuple(items) = &pid else {
        return Err(format!("persistent id is {}, not a tuple", pid.kind()));
    };
    let [
        Value::Str(tag),
        kind,
        Value::Str(key),
        Value::Str(_location),
        numel,
    ] = &items[..]
    else {
        return Err("persistent id is not (\"storage\", type, key, location, numel)".to_string());
    };
    if &**tag != "storage" {
        return Err(format!("persistent id of kind `{tag}`, not `storage`"));
    }
    let numel = uint(numel, "storage size")?;
    let (dtype, elem_size) = match kind {
        Value::Global(Global::Storage(Ok(d))) => (
            Some(*d),
            d.element_size().expect("storage dtypes have a size"),
        ),
        Value::Global(Global::Storage(Err(name))) => {
            return Err(format!(
                "storage `{key}` has type {name}, which this reader cannot read"
            ));
        }
        Value::Global(Global::UntypedStorage) => (None, 1),
        other => return Err(format!("storage type is {}", other.kind())),
    };
    let storage = StorageRef {
        key: key.to_string(),
        numel,
        elem_size,
        dtype,
    };
    if let Some(prev) = storages.get(&storage.key) {
        if **prev != storage {
            return Err(format!(
                "storage `{key}` is named twice with different types or sizes"
            ));
        }
        return Ok(Value::Storage(prev.clone()));
    }
    let rc = Rc::new(storage);
    storages.insert(rc.key.clone(), rc.clone());
    Ok(Value::Storage(rc))
}

/// Interprets a pickle, resolving only the allowed globals. Errors say what and where.
pub fn unpickle(data: &[u8]) -> Result<Root, String> {
    let mut r = Reader { data, pos: 0 };
    let mut m = Machine {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages: HashMap::new(),
        budget: Budget::for_size(data.len()),
        arena: Arena::default(),
    };
    loop {
        let at = r.pos;
        let op = r
            .u8()
            .map_err(|_| "ends without a STOP opcode".to_string())?;
        let step = (|| -> Result<bool, String> {
            match op {
                0x80 => {
                    let v = r.u8()?;
                    if !(2..=5).contains(&v) {
                        return Err(format!("pickle protocol {v} is not supported"));
                    }
                }
                0x95 => {
                    r.u64()?; // FRAME: a length hint only
                }
                b'.' => return Ok(true),
                b'(' => m.marks.push(m.stack.len()),
                b'0' => {
                    m.pop()?;
                }
                b'1' => {
                    m.pop_mark()?;
                }
                b'2' => {
                    let v = m.top()?.clone();
                    m.stack.push(v);
                }
                b'N' => m.stack.push(Value::None),
                0x88 => m.stack.push(Value::Bool(true)),
                0x89 => m.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
                    m.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = r.u8()?;
                    m.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = r.u16()?;
                    m.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = r.u8()? as usize;
                    let v = long(r.take(n)?);
                    m.stack.push(v);
                }
                0x8b => {
                    let n = r.len32()?;
                    let v = long(r.take(n)?);
                    m.stack.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
                    m.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = r.len32()?;
                    let v = utf8(r.take(n)?)?;
                    m.stack.push(v);
                }
                0x8c => {
                    let n = r.u8()? as usize;
                    let v = utf8(r.take(n)?)?;
                    m.stack.push(v);
                }
                0x8d => {
                    let n = r.len64()?;
                    let v = utf8(r.take(n)?)?;
                    m.stack.push(v);
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        r.len32()?
                    } else {
                        r.u8()? as usize
                    };
                    let v = utf8(r.take(n)?)?;
                    m.stack.push(v);
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => r.len32()?,
                        b'C' => r.u8()? as usize,
                        _ => r.len64()?,
                    };
                    let v = Value::Bytes(Rc::from(r.take(n)?));
                    m.stack.push(v);
                }
                b')' => m.stack.push(Value::Tuple(Rc::from(Vec::new()))),
                b't' => {
                    let items = m.pop_mark()?;
                    m.stack.push(Value::Tuple(Rc::from(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(m.pop()?);
                    }
                    items.reverse();
                    m.stack.push(Value::Tuple(Rc::from(items)));
                }
                b']' => m.push_list(Vec::new()),
                b'l' => {
                    let items = m.pop_mark()?;
                    m.push_list(items);
                }
                b'a' => {
                    let v = m.pop()?;
                    match m.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => return Err(format!("APPEND to {}", other.kind())),
                    }
                }
                b'e' => {
                    let items = m.pop_mark()?;
                    match m.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => return Err(format!("APPENDS to {}", other.kind())),
                    }
                }
                b'}' => m.push_dict(Vec::new()),
                b'd' => {
                    let items = m.pop_mark()?;
                    let pairs = pairs(items)?;
                    m.push_dict(pairs);
                }
                b's' => {
                    let v = m.pop()?;
                    let k = m.pop()?;
                    match m.top()? {
                        Value::Dict(d) => d.borrow_mut().push((k, v)),
                        other => return Err(format!("SETITEM on {}", other.kind())),
                    }
                }
                b'u' => {
                    let items = m.pop_mark()?;
                    let new = pairs(items)?;
                    match m.top()? {
                        Value::Dict(d) => d.borrow_mut().extend(new),
                        other => return Err(format!("SETITEMS on {}", other.kind())),
                    }
                }
                b'h' => {
                    let i = r.u8()? as u64;
                    let v = m.memo_get(i)?;
                    m.stack.push(v);
                }
                b'j' => {
                    let i = r.u32()? as u64;
                    let v = m.memo_get(i)?;
                    m.stack.push(v);
                }
                b'q' => {
                    let i = r.u8()? as u64;
                    m.memo_put(i)?;
                }
                b'r' => {
                    let i = r.u32()? as u64;
                    m.memo_put(i)?;
                }
                0x94 => {
                    let i = m.memo.len() as u64;
                    m.memo_put(i)?;
                }
                b'c' => {
                    let module = r.line()?;
                    let name = r.line()?;
                    let g = resolve_global(module, name).ok_or_else(|| forbidden(module, name))?;
                    m.stack.push(Value::Global(g));
                }
                0x93 => {
                    let name = m.pop()?;
                    let module = m.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err("STACK_GLOBAL of non-strings".into());
                    };
                    let g = resolve_global(module, name).ok_or_else(|| forbidden(module, name))?;
                    m.stack.push(Value::Global(g));
                }
                b'R' => {
                    let args = m.pop()?;
                    let func = m.pop()?;
                    let v = call(&func, &args, &mut m.budget)?;
                    if let Value::Dict(d) = &v {
                        m.arena.0.push(Shared::Dict(d.clone()));
                    }
                    m.stack.push(v);
                }
                b'b' => {
                    let _state = m.pop()?;
                    match m.top()? {
                        // An OrderedDict's instance attributes (`_metadata` of state_dict).
                        Value::Dict(_) => {}
                        other => return Err(format!("BUILD on {}", other.kind())),
                    }
                }
                b'Q' => {
                    let pid = m.pop()?;
                    let v = persistent_load(pid, &mut m.storages)?;
                    m.stack.push(v);
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} ({}) is not supported by this restricted \
                         reader",
                        opcode_name(other)
                    ));
                }
            }
            Ok(false)
        })();
        match step {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(format!("{e} (opcode at byte {at})")),
        }
    }
    let root = m.stack.pop().ok_or("STOP with an empty stack")?;
    Ok(Root(root, m.budget, std::mem::take(&mut m.arena)))
}

fn forbidden(module: &str, name: &str) -> String {
    format!(
        "the pickle refers to the global `{module}.{name}`, which a state dict never needs; \
         refusing to load it (only torch's tensor-rebuild functions, storage types and dtypes \
         and collections.OrderedDict are allowed, and nothing is ever executed)"
    )
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// The tensors of a state dict, named by their keys; nested dicts of string keys are
/// flattened with `.` (a checkpoint saved as `{"model": state_dict}`), other values ignored.
///
/// Work is bounded by the pickle's size: each dict is walked once, however many references
/// to it the memo hands out. A dict reached again by another key (`{"model": sd, "ema": sd}`,
/// or a few hundred bytes of memo references describing 2^32 paths) is not walked again:
/// its tensors are listed under the first name it was reached by.
pub fn state_dict_tensors(root: &Root) -> Result<Vec<(String, Rc<TensorRef>)>, String> {
    let Value::Dict(_) = &root.0 else {
        return Err(format!(
            "the pickle holds {}, not a state dict (a dict of tensors)",
            root.0.kind()
        ));
    };
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut budget = root.1;
    collect(&root.0, "", 0, &mut seen, &mut budget, &mut out)?;
    Ok(out)
}

fn collect(
    v: &Value,
    prefix: &str,
    depth: usize,
    seen: &mut std::collections::HashSet<*const RefCell<Vec<(Value, Value)>>>,
    budget: &mut Budget,
    out: &mut Vec<(String, Rc<TensorRef>)>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("dicts nested deeper than {MAX_DEPTH} levels"));
    }
    let Value::Dict(items) = v else {
        return Ok(());
    };
    if !seen.insert(Rc::as_ptr(items)) {
        return Ok(());
    }
    for (k, v) in items.borrow().iter() {
        let Value::Str(k) = k else { continue };
        if !matches!(v, Value::Tensor(_) | Value::Dict(_)) {
            continue;
        }
        budget.spend(prefix.len() + 1 + k.len())?;
        let name = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Tensor(t) => out.push((name, t.clone())),
            Value::Dict(_) => collect(v, &name, depth + 1, seen, budget, out)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(bytes: &[u8]) -> String {
        match unpickle(bytes) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn rejects_unknown_globals_by_name() {
        // PROTO 2, GLOBAL 'os system', STRING arg, TUPLE1, REDUCE, STOP
        let mut p = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.".to_vec();
        assert!(err(&p).contains("`os.system`"));
        p = b"\x80\x02cbuiltins\neval\n.".to_vec();
        assert!(err(&p).contains("`builtins.eval`"));
        p = b"\x80\x04\x8c\x0b__builtin__\x8c\x04exec\x93.".to_vec();
        assert!(err(&p).contains("`__builtin__.exec`"));
        p = b"\x80\x02ctorch\nload\n.".to_vec();
        assert!(err(&p).contains("`torch.load`"));
    }

    #[test]
    fn rejects_unsupported_opcodes_and_truncation() {
        assert!(err(b"\x80\x02i__main__\nX\n.").contains("INST"));
        assert!(err(b"\x80\x02\x81.").contains("NEWOBJ"));
        assert!(err(b"\x80\x02").contains("without a STOP"));
        assert!(err(b"\x80\x02X\xff\x00\x00\x00ab.").contains("truncated"));
        assert!(err(b"\x80\x09.").contains("protocol 9"));
        assert!(err(b"\x80\x020.").contains("underflow"));
        assert!(err(b"\x80\x02h\x05.").contains("memo entry 5"));
        assert!(err(b"\x80\x02(0.").contains("MARK"));
        assert!(err(b"\x80\x02K\x00K\x01K\x02s.").contains("SETITEM on an int"));
    }

    /// Every opcode that imports or calls something outside the allowed globals is refused by
    /// name: INST, OBJ, NEWOBJ, NEWOBJ_EX and the extension-registry imports EXT1/2/4 are not
    /// interpreted at all; GLOBAL and STACK_GLOBAL resolve only torch's rebuild functions,
    /// storage types, dtypes and OrderedDict; REDUCE calls only those; BUILD only sets a dict's
    /// attributes.
    #[test]
    fn every_calling_or_importing_opcode_is_refused_by_name() {
        for (bytes, name) in [
            (&b"\x80\x02(X\x02\x00\x00\x00lsios\nsystem\n."[..], "INST"),
            (
                &b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(o."[..],
                "OBJ",
            ),
            (&b"\x80\x02ctorch\nTensor\n)\x81."[..], "NEWOBJ"),
            (&b"\x80\x04ctorch\nTensor\n)}\x92."[..], "NEWOBJ_EX"),
            (&b"\x80\x02\x82\x01."[..], "EXT1"),
            (&b"\x80\x02\x83\x01\x00."[..], "EXT2"),
            (&b"\x80\x02\x84\x01\x00\x00\x00."[..], "EXT4"),
        ] {
            let e = err(bytes);
            assert!(
                e.contains(name) && e.contains("not supported"),
                "{name}: {e}"
            );
        }
        // Globals outside the allowed set are named, through either opcode.
        let e = err(b"\x80\x02csubprocess\nPopen\n.");
        assert!(e.contains("`subprocess.Popen`"), "{e}");
        let e = err(b"\x80\x04\x8c\x08builtins\x8c\x0a__import__\x93.");
        assert!(e.contains("`builtins.__import__`"), "{e}");
        // A torch function that is not a rebuild function is refused too.
        let e = err(b"\x80\x02ctorch.serialization\nload\n.");
        assert!(e.contains("`torch.serialization.load`"), "{e}");
        // REDUCE of something that is not an allowed global, BUILD on anything but a dict.
        assert!(err(b"\x80\x02K\x01)R.").contains("REDUCE calls an int"));
        assert!(err(b"\x80\x02]}b.").contains("BUILD on a list"));
    }

    /// Pickles that would create a file if anything were executed (`builtins.open`,
    /// `os.system`, `posix.system` with `touch`): each is refused by name and the file does not
    /// exist afterwards.
    #[test]
    fn nothing_is_ever_executed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pwned");
        let path = target.to_str().unwrap();
        let command = format!("touch {path}");
        let unicode = |s: &str| {
            let mut v = vec![b'X'];
            v.extend_from_slice(&(s.len() as u32).to_le_bytes());
            v.extend_from_slice(s.as_bytes());
            v
        };
        let mut cases = Vec::new();
        // builtins.open(path, 'w')
        let mut p = b"\x80\x02cbuiltins\nopen\n".to_vec();
        p.extend(unicode(path));
        p.extend(unicode("w"));
        p.extend_from_slice(b"\x86R.");
        cases.push((p, "`builtins.open`"));
        for module in ["os", "posix"] {
            let mut p = b"\x80\x02c".to_vec();
            p.extend_from_slice(module.as_bytes());
            p.extend_from_slice(b"\nsystem\n");
            p.extend(unicode(&command));
            p.extend_from_slice(b"\x85R.");
            cases.push((
                p,
                if module == "os" {
                    "`os.system`"
                } else {
                    "`posix.system`"
                },
            ));
        }
        for (p, name) in cases {
            let e = err(&p);
            assert!(e.contains(name), "{e}");
            assert!(!target.exists(), "{name} was executed");
        }
    }

    #[test]
    fn builds_plain_values() {
        // {'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'z')}
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bC\x02xyX\x01\x00\x00\x00z\x86u.";
        let Root(v, _, _arena) = unpickle(p).unwrap();
        let Value::Dict(d) = &v else { panic!() };
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        let Value::List(l) = &d[0].1 else { panic!() };
        let l = l.borrow();
        assert!(matches!(l[0], Value::Int(1)));
        assert!(matches!(l[1], Value::Int(-2)));
        assert!(matches!(l[2], Value::Float(x) if x == 3.5));
        assert!(matches!(l[3], Value::None));
        assert!(matches!(l[4], Value::Bool(true)));
        let Value::Tuple(t) = &d[1].1 else { panic!() };
        assert!(matches!(&t[0], Value::Bytes(b) if &b[..] == b"xy"));
    }

    #[test]
    fn decodes_long1() {
        assert!(matches!(long(&[0xff]), Value::Int(-1)));
        assert!(matches!(long(&[0x00, 0x01]), Value::Int(256)));
        assert!(matches!(long(&[0; 10]), Value::BigInt));
        assert!(matches!(long(&[]), Value::Int(0)));
    }

    #[test]
    fn self_referencing_lists_do_not_loop() {
        // l = []; l.append(l); {'x': l}
        let p = b"\x80\x02}(X\x01\x00\x00\x00x]q\x00h\x00au.";
        let root = unpickle(p).unwrap();
        assert!(state_dict_tensors(&root).unwrap().is_empty());
        // d = {}; d['d'] = d: the dict is walked once, not until a depth limit.
        let p = b"\x80\x02}q\x00X\x01\x00\x00\x00dh\x00s.";
        let root = unpickle(p).unwrap();
        assert!(state_dict_tensors(&root).unwrap().is_empty());
        // 40 distinct dicts nested one in the next stop at the depth limit.
        let mut p = b"\x80\x02}q\x00".to_vec();
        for i in 1..40u8 {
            p.extend_from_slice(b"}q");
            p.push(i);
            p.extend_from_slice(b"X\x01\x00\x00\x00dh");
            p.push(i - 1);
            p.push(b's');
        }
        p.push(b'.');
        let root = unpickle(&p).unwrap();
        assert!(
            state_dict_tensors(&root)
                .unwrap_err()
                .contains("nested deeper than 32")
        );
    }

    /// 31 dicts, each holding the next one under two keys: 2^30 paths from 400 bytes. Each
    /// dict is walked once, so this ends at once with the one tensor-free path.
    /// A list appended to itself through the memo is a reference cycle; the arena breaks it
    /// when the root is dropped (found by the `pickle` fuzz target's leak checker).
    #[test]
    fn cycles_built_through_the_memo_are_freed() {
        // {'a': L} where L = [L]
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01h\x01au.";
        let root = unpickle(p).unwrap();
        let weak = {
            let Root(Value::Dict(d), _, _) = &root else {
                panic!("not a dict")
            };
            let d = d.borrow();
            let Value::List(l) = &d[0].1 else {
                panic!("not a list")
            };
            assert!(matches!(&l.borrow()[0], Value::List(inner) if Rc::ptr_eq(inner, l)));
            Rc::downgrade(l)
        };
        drop(root);
        assert!(weak.upgrade().is_none(), "the self-referencing list leaked");
    }

    /// Containers nested a million deep are dropped without recursion.
    #[test]
    fn deeply_nested_containers_drop_without_recursing() {
        let mut p = b"\x80\x02}(X\x01\x00\x00\x00a".to_vec();
        p.extend(std::iter::repeat_n(b']', 300_000));
        p.extend(std::iter::repeat_n(b'a', 299_999));
        p.extend(b"u.");
        let root = unpickle(&p).unwrap();
        assert!(state_dict_tensors(&root).unwrap().is_empty());
        drop(root);
        let mut p = b"\x80\x02N".to_vec();
        p.extend(std::iter::repeat_n(0x85, 1_000_000));
        p.push(b'.');
        drop(unpickle(&p).unwrap());
    }

    #[test]
    fn shared_dicts_are_walked_once() {
        let mut p = b"\x80\x02}q\x00".to_vec(); // the innermost dict, memo 0
        for i in 1..31u8 {
            // d_i = {'a': d_{i-1}, 'b': d_{i-1}}, memo i
            p.extend_from_slice(b"}q");
            p.push(i);
            p.extend_from_slice(b"(X\x01\x00\x00\x00ah");
            p.push(i - 1);
            p.extend_from_slice(b"X\x01\x00\x00\x00bh");
            p.push(i - 1);
            p.push(b'u');
        }
        p.push(b'.');
        // The stack holds d_0 .. d_30; STOP returns the top, d_30.
        let root = unpickle(&p).unwrap();
        let Root(Value::Dict(top), _, _) = &root else {
            panic!("the root is not a dict")
        };
        assert_eq!(top.borrow().len(), 2);
        assert!(state_dict_tensors(&root).unwrap().is_empty());
    }

    #[test]
    fn top_level_must_be_a_dict() {
        let root = unpickle(b"\x80\x02K\x01.").unwrap();
        assert!(
            state_dict_tensors(&root)
                .unwrap_err()
                .contains("not a state dict")
        );
    }
}
