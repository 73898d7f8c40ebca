/* pair_style transip: a strictly local TransIP model (TorchScript, libtorch) as a LAMMPS pair style.

   Syntax:  pair_style transip MODEL.pt [charge Q] [spin M] [chunk N]
            pair_coeff * * El1 El2 ...   (one element symbol per atom type)

   The model file is a transip-md compiled model (TorchScript + transip_metadata.json). Only local
   models (finite cutoff) are accepted: each atom's energy depends on its neighbours within the cutoff
   only, so the ghost cutoff is the model cutoff and any MPI domain decomposition is exact. */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(transip,PairTransIP);
// clang-format on
#else

#ifndef LMP_PAIR_TRANSIP_H
#define LMP_PAIR_TRANSIP_H

#include "pair.h"

#include <torch/script.h>

#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairTransIP : public Pair {
 public:
  PairTransIP(class LAMMPS *);
  ~PairTransIP() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 protected:
  void allocate();
  void load_model(const std::string &path);
  void check_metadata(const std::string &path, const std::string &raw);
  void check_module_agrees(const std::string &path);
  void check_type_masses();

  torch::jit::Module module;
  torch::Device device;
  bool loaded;
  std::string model_path;
  double cutoff;                      // Å
  double energy_factor;               // model eV -> LAMMPS energy unit
  std::vector<int> model_elements;    // atomic numbers the model knows
  std::vector<long> type_to_z;        // index: LAMMPS type (1..ntypes)
  std::string model_dtype;
  double charge, multiplicity;
  int chunk_size;    // local atoms per model call (energy_and_gradient); 0: all at once
  bool pass_natoms;  // the model's energy_and_gradient takes the trailing natoms argument (format version 2)
  bool learned_spread;  // learned charge/spin spread (format version 3): two sums over all MPI ranks per step
};

}    // namespace LAMMPS_NS

#endif
#endif
