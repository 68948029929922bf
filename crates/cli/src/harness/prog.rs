//! One program of an object, run on a frame as BPF_PROG_TEST_RUN does (the
//! device is `lo`, ifindex 1; one CPU).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_object::Object;
use skiff_vm::{Collection, LoadOptions, Vm};

use super::{map::MapRef, names, verdict_name, Error};

/// A loaded object with one program chosen.
pub struct Prog {
    path: PathBuf,
    coll: Collection,
    prog: Arc<skiff_vm::Program>,
    vm: Vm,
}

/// What one run gave.
#[derive(Clone, Debug)]
pub struct ProgOutcome {
    pub retval: u32,
    /// The kernel's name of `retval` (`XDP_DROP`, `TC_ACT_UNSPEC`), or the
    /// number when it is outside the enum.
    pub verdict: String,
    /// The packet after the run (XDP: from data_meta, as the kernel returns it).
    pub data_out: Vec<u8>,
    /// The target a redirect helper chose.
    pub redirect: Option<skiff_net::Redirect>,
    /// A run skiff ended (out-of-bounds access, runaway loop): its message.
    pub exception: Option<String>,
    /// The run's `bpf_trace_printk` lines.
    pub printk: Vec<String>,
}

impl Prog {
    /// Loads `object` (maps created with their initial contents, programs
    /// compiled) and chooses `program` by name.
    pub fn load(object: impl AsRef<Path>, program: &str) -> Result<Prog, Error> {
        let path = object.as_ref().to_path_buf();
        let oerr = |message: String| Error::Object {
            path: path.clone(),
            message,
        };
        let bytes = std::fs::read(&path).map_err(|e| oerr(e.to_string()))?;
        let obj = Object::parse(&bytes).map_err(|e| oerr(e.to_string()))?;
        // A tracing program asked for by name: "not supported: program type X".
        obj.find_program(program).map_err(|e| oerr(e.to_string()))?;
        let coll = Collection::load(
            &obj,
            &LoadOptions {
                possible_cpus: 1,
                ..Default::default()
            },
        )
        .map_err(|e| oerr(e.to_string()))?;
        let prog = coll
            .program(program)
            .map_err(|_| Error::NotFound {
                what: "program",
                name: program.to_string(),
                known: names(coll.programs.iter().map(|p| p.name.as_str())),
            })?
            .clone();
        let mut vm = Vm::new(skiff_net::helper_table());
        vm.env.set_programs(coll.programs.clone());
        Ok(Prog {
            path,
            coll,
            prog,
            vm,
        })
    }

    /// The object's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The program's type (XDP or TC).
    pub fn prog_type(&self) -> skiff_object::ProgType {
        self.prog.prog_type
    }

    /// A map of the object by name.
    pub fn map(&self, name: &str) -> Result<MapRef, Error> {
        let map = self.coll.map(name).map_err(|_| Error::NotFound {
            what: "map",
            name: name.to_string(),
            known: names(self.coll.maps.iter().map(|(n, _)| n.as_str())),
        })?;
        Ok(MapRef {
            name: name.to_string(),
            map: map.clone(),
        })
    }

    /// The object's maps, by name in the object's order.
    pub fn maps(&self) -> Vec<MapRef> {
        self.coll
            .maps
            .iter()
            .map(|(n, m)| MapRef {
                name: n.clone(),
                map: m.clone(),
            })
            .collect()
    }

    /// Runs the program once on `frame` (bytes from the Ethernet header).
    pub fn run(&mut self, frame: &[u8]) -> Result<ProgOutcome, Error> {
        let out = skiff_net::test_run::test_run(
            &mut self.vm,
            &self.prog,
            &skiff_net::test_run::TestRun {
                data_in: frame,
                ctx_in: None,
                repeat: 1,
            },
        )
        .map_err(|e| Error::Refused(format!("the test run was refused: {e}")))?;
        Ok(ProgOutcome {
            retval: out.retval,
            verdict: verdict_name(self.prog.prog_type, out.retval)
                .map(String::from)
                .unwrap_or_else(|| (out.retval as i32).to_string()),
            data_out: out.data_out,
            redirect: out.redirect,
            exception: out.exception.map(|e| e.to_string()),
            printk: self.vm.env.trace.drain(..).collect(),
        })
    }
}
