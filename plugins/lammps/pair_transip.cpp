/* pair_style transip: see pair_transip.h. Energies eV -> LAMMPS units via transip_units.h
   (generated from transip_md/units.py). Forces by autograd through the edge vectors r_j - r_i:
   with g = dE/d(r_ij), f_i += g and f_j -= g (j may be a ghost; newton on sends it home). */

#include "pair_transip.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"

#include "transip_contract.h"
#include "transip_units.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>

using namespace LAMMPS_NS;

namespace {
int symbol_to_z(const std::string &s)
{
  for (int z = 1; z < TRANSIP_N_SYMBOLS; ++z)
    if (s == TRANSIP_SYMBOLS[z]) return z;
  return -1;
}

std::string z_to_symbol(long z)
{
  return (z > 0 && z < TRANSIP_N_SYMBOLS) ? TRANSIP_SYMBOLS[z] : "Z=" + std::to_string(z);
}
}    // namespace

PairTransIP::PairTransIP(LAMMPS *lmp) :
    Pair(lmp), device(torch::kCPU), loaded(false), cutoff(0.0), energy_factor(1.0), charge(0.0),
    multiplicity(1.0), chunk_size(128), pass_natoms(false), learned_spread(false)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
  // the global virial is accumulated from the edges (symmetric part, as ASE's stress); fdotr would
  // give the unsymmetrised x f sums of this not exactly rotation-invariant model
  no_virial_fdotr_compute = 1;
}

PairTransIP::~PairTransIP()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairTransIP::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) setflag[i][j] = 0;
  type_to_z.assign(n, -1);
}

/* pair_style transip MODEL.pt [charge Q] [spin M] [chunk N] */
void PairTransIP::settings(int narg, char **arg)
{
  if (narg < 1) error->all(FLERR, "Illegal pair_style transip command: pair_style transip MODEL.pt [charge Q] [spin M]");
  model_path = arg[0];
  charge = 0.0;
  chunk_size = 128;
  multiplicity = 1.0;
  int iarg = 1;
  while (iarg < narg) {
    std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "pair_style transip: keyword {} needs a value", key);
    if (key == "charge") {
      charge = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (charge != std::floor(charge)) error->all(FLERR, "pair_style transip: charge must be an integer (e), got {}", charge);
    } else if (key == "chunk") {
      chunk_size = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (chunk_size < 0) error->all(FLERR, "pair_style transip: chunk must be >= 0 (0: all atoms at once)");
    } else if (key == "spin") {
      multiplicity = utils::numeric(FLERR, arg[iarg + 1], false, lmp);
      if (multiplicity < 1.0 || multiplicity != std::floor(multiplicity))
        error->all(FLERR, "pair_style transip: spin is the multiplicity 2S+1, an integer >= 1, got {}", multiplicity);
    } else {
      error->all(FLERR, "pair_style transip: unknown keyword {} (allowed: charge Q, spin M, chunk N)", key);
    }
    iarg += 2;
  }

  std::string units = update->unit_style;
  if (units == "metal")
    energy_factor = TRANSIP_ENERGY_FROM_EV_METAL;
  else if (units == "real")
    energy_factor = TRANSIP_ENERGY_FROM_EV_REAL;
  else
    error->all(FLERR, "pair_style transip supports units metal and real, not {}", units);

  load_model(model_path);
}

void PairTransIP::load_model(const std::string &path)
{
  {
    std::ifstream probe(path, std::ios::binary);
    if (!probe.good()) error->all(FLERR, "pair_style transip: cannot open model file {}", path);
  }
  if (torch::cuda::is_available()) device = torch::Device(torch::kCUDA, comm->me % torch::cuda::device_count());
  torch::jit::ExtraFilesMap extra{{TRANSIP_METADATA_FILE, ""}};
  std::string load_error;
  try {
    module = torch::jit::load(path, device, extra);
  } catch (const std::exception &e) {
    load_error = e.what();
    load_error = load_error.substr(0, load_error.find('\n'));
  }
  // error->all throws: keep it outside the try block, so that each message is printed once
  if (!load_error.empty())
    error->all(FLERR, "pair_style transip: {} is not a readable TorchScript model file: {}", path, load_error);
  check_metadata(path, extra[TRANSIP_METADATA_FILE]);
  if (!module.find_method("energy_and_gradient").has_value())
    error->all(FLERR, "pair_style transip: {} is not a transip-md model file (no energy_and_gradient method)", path);
  check_module_agrees(path);
  learned_spread = module.hasattr("learned_spread") && module.attr("learned_spread").toBool();
  if (learned_spread)
    for (const char *name : {"charge_spread_sums", "energy_gradients_given_spread", "charge_spread_sum_gradient"})
      if (!module.find_method(name).has_value())
        error->all(FLERR, "pair_style transip: {} has a learned charge spread but no {} method", path, name);
  pass_natoms = false;
  for (const auto &arg : module.get_method("energy_and_gradient").function().getSchema().arguments())
    pass_natoms = pass_natoms || arg.name() == "natoms";
  // The profiling executor's optimised graphs ran slower than the plain interpreter for this model
  // (shapes change with the neighbour count); see transip_md/model/engine.py.
  torch::jit::setGraphExecutorOptimize(false);
  module.eval();
  // with several MPI ranks, one torch thread per rank unless the user chose (OMP_NUM_THREADS)
  if (comm->nprocs > 1 && !std::getenv("OMP_NUM_THREADS")) torch::set_num_threads(1);
  loaded = true;
  if (comm->me == 0) {
    std::string els;
    for (int z : model_elements) els += " " + z_to_symbol(z);
    utils::logmesg(lmp, "pair_style transip: {} cutoff {} Å, elements{}, {} on {}, charge {} spin {}\n", path,
                   cutoff, els, model_dtype, device.is_cuda() ? "CUDA" : "CPU", charge, multiplicity);
  }
}

/* the metadata rules of transip_md/model/contract.py (format name and versions from transip_contract.h) */
void PairTransIP::check_metadata(const std::string &path, const std::string &raw)
{
  if (raw.empty())
    error->all(FLERR, "pair_style transip: {} is not a transip-md model file (TorchScript without {})", path,
               TRANSIP_METADATA_FILE);
  json meta;
  std::string parse_error;
  try {
    meta = json::parse(raw);
  } catch (std::exception &e) {
    parse_error = e.what();
  }
  if (!parse_error.empty())
    error->all(FLERR, "pair_style transip: metadata of {} is not valid JSON: {}", path, parse_error);
  if (!meta.is_object() || !meta.contains("format") || meta["format"] != TRANSIP_FORMAT_NAME)
    error->all(FLERR, "pair_style transip: {} is not a transip-md model file (metadata format is not {})", path,
               TRANSIP_FORMAT_NAME);
  if (!meta.contains("format_version") || !meta["format_version"].is_number_integer())
    error->all(FLERR, "pair_style transip: {} has no integer format_version in its metadata", path);
  const int version = meta["format_version"].get<int>();
  if (version > TRANSIP_FORMAT_VERSION)
    error->all(FLERR, "pair_style transip: {} has model format version {}, newer than this plugin understands ({}); "
               "rebuild the plugin from a newer transip-md", path, version, TRANSIP_FORMAT_VERSION);
  if (version < TRANSIP_OLDEST_FORMAT_VERSION)
    error->all(FLERR, "pair_style transip: {} has model format version {}, written by an older transip-md; this "
               "plugin runs versions {}..{}: re-export or retrain the model", path, version,
               TRANSIP_OLDEST_FORMAT_VERSION, TRANSIP_FORMAT_VERSION);
  if (!meta.contains("cutoff") || meta["cutoff"].is_null())
    error->all(FLERR, "pair_style transip: {}: " TRANSIP_GLOBAL_MODEL_LAMMPS, path);
  cutoff = meta["cutoff"].get<double>();
  if (!(cutoff > 0.0)) error->all(FLERR, "pair_style transip: model cutoff {} Å is not positive", cutoff);
  model_elements.clear();
  for (auto &z : meta["elements"]) model_elements.push_back(z.get<int>());
  model_dtype = meta.value("dtype", std::string("float32"));
  bool uses_cs = meta.value("uses_charge_spin", true);
  if (!uses_cs && (charge != 0.0 || multiplicity != 1.0) && comm->me == 0)
    error->warning(FLERR, "pair_style transip: this model ignores charge and spin");
}

/* the metadata's cutoff and elements must be the TorchScript module's own (edited metadata is refused) */
void PairTransIP::check_module_agrees(const std::string &path)
{
  if (!module.hasattr("cutoff") || !module.hasattr("is_local") || !module.hasattr("elements"))
    error->all(FLERR, "pair_style transip: {} is not a transip-md model file (no cutoff/is_local/elements)", path);
  const bool is_local = module.attr("is_local").toBool();
  const double module_cutoff = module.attr("cutoff").toDouble();
  if (!is_local || std::fabs(module_cutoff - cutoff) > 1e-9 * std::max(1.0, cutoff))
    error->all(FLERR, "pair_style transip: {}: metadata cutoff {} Å disagrees with the compiled module's cutoff "
               "{} (edited metadata?); re-export the model instead of editing its metadata", path, cutoff,
               is_local ? std::to_string(module_cutoff) + " Å" : std::string("None (global model)"));
  torch::Tensor els = module.attr("elements").toTensor().to(torch::kCPU, torch::kInt64).contiguous();
  bool same = els.numel() == (int64_t) model_elements.size();
  for (int64_t k = 0; same && k < els.numel(); ++k) same = els.data_ptr<int64_t>()[k] == model_elements[k];
  if (!same)
    error->all(FLERR, "pair_style transip: {}: metadata elements disagree with the compiled module's (edited "
               "metadata?); re-export the model instead of editing its metadata", path);
}

/* pair_coeff * * El1 El2 ... */
void PairTransIP::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 2 + ntypes)
    error->all(FLERR, "pair_coeff for transip: use pair_coeff * * El1 ... El{} (one element per atom type)",
               ntypes);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for transip: the type ranges must be * *");
  if (!loaded) error->all(FLERR, "pair_coeff for transip: pair_style transip MODEL.pt must come first");
  for (int t = 1; t <= ntypes; ++t) {
    std::string sym = arg[1 + t];
    int z = symbol_to_z(sym);
    if (z < 0) error->all(FLERR, "pair_coeff for transip: atom type {}: {} is not an element symbol", t, sym);
    bool known = false;
    for (int mz : model_elements) known = known || (mz == z);
    if (!known) {
      std::string els;
      for (int mz : model_elements) els += " " + z_to_symbol(mz);
      error->all(FLERR, "pair_coeff for transip: atom type {} is {}, which model {} does not know (elements{})",
                 t, sym, model_path, els);
    }
    type_to_z[t] = z;
  }
  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
}

void PairTransIP::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style transip requires newton pair on");
  if (!loaded) error->all(FLERR, "pair_style transip: no model loaded");
  // full list of local atoms; neighbours j may be ghosts. Strictly local model: ghost cutoff = cutoff.
  neighbor->add_request(this, NeighConst::REQ_FULL);

  check_type_masses();
  // total charge and spin multiplicity must fit the electron count of the whole system
  // (rule and message: transip_md/model/engine.py, through transip_contract.h)
  long zsum = 0, ztotal = 0;
  for (int i = 0; i < atom->nlocal; ++i) zsum += type_to_z[atom->type[i]];
  MPI_Allreduce(&zsum, &ztotal, 1, MPI_LONG, MPI_SUM, world);
  const long n_electrons = ztotal - (long) charge;
  const long unpaired = (long) multiplicity - 1;
  if (n_electrons < 0 || unpaired > n_electrons || (n_electrons - unpaired) % 2 != 0)
    error->all(FLERR, "pair_style transip: " TRANSIP_PARITY_MESSAGE, n_electrons, (long) charge, (long) multiplicity);
}

/* pair_coeff's element order against the per-type masses (read_data Masses, mass command): a type whose mass
   is closer to the standard mass of ANOTHER element of the map than to its own element's is an error
   (H C O N for types whose masses say H C N O). Isotopes pass: deuterium (2.014) is still closest to H. */
void PairTransIP::check_type_masses()
{
  if (atom->rmass_flag || !atom->mass || !atom->mass_setflag) return;    // per-atom masses: nothing to check
  for (int t = 1; t <= atom->ntypes; ++t) {
    if (!atom->mass_setflag[t] || type_to_z[t] < 1) continue;
    const double m = atom->mass[t];
    const long z = type_to_z[t];
    const double own = std::fabs(m - TRANSIP_MASSES[z]);
    for (int u = 1; u <= atom->ntypes; ++u) {
      const long zu = type_to_z[u];
      if (zu < 1 || zu == z) continue;
      if (std::fabs(m - TRANSIP_MASSES[zu]) < own)
        error->all(FLERR,
                   "pair_coeff for transip: atom type {} is mapped to {} (standard mass {:.3f}) but its mass {:.4g} "
                   "is that of {} ({:.3f}), also in the map: is the element order of pair_coeff the order of the "
                   "types?", t, z_to_symbol(z), TRANSIP_MASSES[z], m, z_to_symbol(zu), TRANSIP_MASSES[zu]);
    }
  }
}

double PairTransIP::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "pair_coeff for transip: all atom types need an element");
  return cutoff;
}

void PairTransIP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const int inum = list->inum;
  int *ilist = list->ilist;
  int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  if (inum == 0) {
    // a learned charge/spin spread sums over every rank (W, then dE/dW): a rank without atoms adds zeros
    if (learned_spread)
      for (int pass = 0; pass < 2; ++pass) {
        double zero = 0.0, total = 0.0;
        MPI_Allreduce(&zero, &total, 1, MPI_DOUBLE, MPI_SUM, world);
      }
    return;
  }

  const double rcsq = cutoff * cutoff;
  // overlapping atoms are refused, as in every engine (transip_md/validation.py: MIN_DISTANCE_A)
  double min_rsq = TRANSIP_MIN_DISTANCE_A * TRANSIP_MIN_DISTANCE_A;
  int close_i = -1, close_j = -1;
  std::vector<int64_t> src, dst;
  std::vector<double> vec;
  src.reserve(inum * 32);
  dst.reserve(inum * 32);
  vec.reserve(inum * 96);
  for (int ii = 0; ii < inum; ++ii) {
    const int i = ilist[ii];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    for (int jj = 0; jj < numneigh[i]; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq < rcsq) {
        if (rsq < min_rsq) {
          min_rsq = rsq;
          close_i = i;
          close_j = j;
        }
        src.push_back(i);
        dst.push_back(j);
        vec.push_back(dx);
        vec.push_back(dy);
        vec.push_back(dz);
      }
    }
  }
  if (close_i >= 0)
    error->one(FLERR, "pair_style transip: atoms {} ({}) and {} ({}) overlap: distance {:.4f} Å < {} Å (atom IDs)",
               atom->tag[close_i], z_to_symbol(type_to_z[type[close_i]]), atom->tag[close_j],
               z_to_symbol(type_to_z[type[close_j]]), std::sqrt(min_rsq), TRANSIP_MIN_DISTANCE_A);
  const int64_t n_edges = (int64_t) src.size();
  std::vector<int64_t> species(nall);
  for (int i = 0; i < nall; ++i) species[i] = type_to_z[type[i]];

  auto opt_l = torch::TensorOptions().dtype(torch::kInt64);
  auto opt_d = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor t_species = torch::from_blob(species.data(), {nall}, opt_l).to(device);
  torch::Tensor t_src = torch::from_blob(src.data(), {n_edges}, opt_l);
  torch::Tensor t_dst = torch::from_blob(dst.data(), {n_edges}, opt_l);
  torch::Tensor t_index = torch::stack({t_src, t_dst}).to(device);
  torch::Tensor t_vec = torch::from_blob(vec.data(), {n_edges, 3}, opt_d).to(device).clone();
  torch::Tensor t_charge = torch::full({1}, charge, opt_d).to(device);
  torch::Tensor t_spin = torch::full({1}, multiplicity, opt_d).to(device);
  torch::Tensor t_batch = torch::zeros({nall}, opt_l).to(device);

  torch::Tensor energies, grad;
  try {
    std::vector<torch::jit::IValue> inputs{t_species, t_index, t_vec, t_charge, t_spin, t_batch, (int64_t) nlocal};
    // local atoms in chunks of chunk_size centres: exact (strict locality), bounded memory
    inputs.push_back((int64_t) chunk_size);
    // the total atom count of the system (this rank sees only its subdomain): charge/spin conditioning is
    // size-consistent, so it needs N of the whole structure for exact results under domain decomposition
    if (pass_natoms) inputs.push_back(torch::full({1}, (double) atom->natoms, opt_d).to(device));
    if (learned_spread) {
      // the spread's weight sum W over all ranks, then dE/dW summed over all ranks and its force part added
      // (transip_md/model/contract.py, format 3): exact under any domain decomposition
      std::vector<torch::jit::IValue> sum_inputs{t_species, t_index, t_vec, t_batch, (int64_t) 1, (int64_t) nlocal};
      double w_local = module.get_method("charge_spread_sums")(sum_inputs).toTensor().item<double>(), w_total = 0.0;
      MPI_Allreduce(&w_local, &w_total, 1, MPI_DOUBLE, MPI_SUM, world);
      inputs.push_back(torch::full({1}, w_total, opt_d).to(device));
      auto out = module.get_method("energy_gradients_given_spread")(inputs).toTuple();
      energies = out->elements()[0].toTensor();
      grad = out->elements()[1].toTensor();
      double g_local = out->elements()[2].toTensor().item<double>(), g_total = 0.0;
      MPI_Allreduce(&g_local, &g_total, 1, MPI_DOUBLE, MPI_SUM, world);
      std::vector<torch::jit::IValue> grad_inputs{t_species, t_index, t_vec, t_batch,
                                                  torch::full({1}, g_total, opt_d).to(device), (int64_t) nlocal};
      grad = grad + module.get_method("charge_spread_sum_gradient")(grad_inputs).toTensor();
    } else {
      auto out = module.get_method("energy_and_gradient")(inputs).toTuple();
      energies = out->elements()[0].toTensor();
      grad = out->elements()[1].toTensor();
    }
  } catch (const std::exception &e) {
    std::string msg = e.what();
    auto pos = msg.find("transip:");
    msg = (pos != std::string::npos) ? msg.substr(pos, msg.find('\n', pos) - pos) : msg.substr(0, msg.find('\n'));
    error->one(FLERR, "pair_style transip: model evaluation failed: {}", msg);
  }
  if (!grad.defined()) grad = torch::zeros({n_edges, 3}, opt_d);
  torch::Tensor e_cpu = energies.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  torch::Tensor g_cpu = grad.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const double *e = e_cpu.data_ptr<double>();
  const double *g = g_cpu.data_ptr<double>();
  const double ef = energy_factor;

  if (eflag_global)
    for (int i = 0; i < nlocal; ++i) eng_vdwl += ef * e[i];
  if (eflag_atom)
    for (int i = 0; i < nlocal; ++i) eatom[i] += ef * e[i];

  for (int64_t k = 0; k < n_edges; ++k) {
    const int i = (int) src[k], j = (int) dst[k];
    const double gx = ef * g[3 * k], gy = ef * g[3 * k + 1], gz = ef * g[3 * k + 2];
    f[i][0] += gx;
    f[i][1] += gy;
    f[i][2] += gz;
    f[j][0] -= gx;
    f[j][1] -= gy;
    f[j][2] -= gz;
    if (vflag_either) {
      const double *r = &vec[3 * k];
      // W = -r (x) g, symmetrised; order xx yy zz xy xz yz
      double v[6];
      v[0] = -r[0] * gx;
      v[1] = -r[1] * gy;
      v[2] = -r[2] * gz;
      v[3] = -0.5 * (r[0] * gy + r[1] * gx);
      v[4] = -0.5 * (r[0] * gz + r[2] * gx);
      v[5] = -0.5 * (r[1] * gz + r[2] * gy);
      if (vflag_global)
        for (int c = 0; c < 6; ++c) virial[c] += v[c];
      if (vflag_atom)
        for (int c = 0; c < 6; ++c) {
          vatom[i][c] += 0.5 * v[c];
          vatom[j][c] += 0.5 * v[c];
        }
    }
  }
}
