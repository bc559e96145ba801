// Realisasi the demo's units report for the seed runs (see
// deploy/base/aggregator/catalogues): the fan-out members' task outputs.
#pragma once

#include "sopflow/v1/run.pb.h"

namespace sopflow::demo {

// Fills output.data.realisasi (and anggaran) for fan-out member tasks of
// the seed SOPs; other tasks are left alone.
void FillRealisasi(const v1::Task& task, v1::TaskOutput* output);

}  // namespace sopflow::demo
