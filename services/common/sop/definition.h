// SOP definition files (YAML) -> sopflow.v1.Definition, with validation that
// reports every problem with file, line and field. The format is described
// in docs/definitions.md; the seeds are in deploy/base/definitions/.
#pragma once

#include <string>
#include <vector>

#include "sopflow/v1/definition.pb.h"

namespace sopflow {

struct Problem {
  std::string file;
  int line = 0;         // 1-based; 0 when unknown
  std::string field;    // e.g. "langkah[5].hasil.perbaikan"
  std::string message;
  std::string ToString() const;  // "file:line: field: message"
};

struct ParsedDefinition {
  v1::Definition definition;
  std::vector<Problem> problems;
  bool ok() const { return problems.empty(); }
};

// Parses and validates. Never throws; problems say what is wrong.
ParsedDefinition ParseDefinition(const std::string& yaml, const std::string& file_name);

// Parses and validates; throws DomainError(kInvalidArgument) whose message
// lists every problem, one per line.
v1::Definition ParseDefinitionOrThrow(const std::string& yaml, const std::string& file_name);

// Index of the step with this number, or -1.
int FindStep(const v1::Definition& def, uint32_t number);
const v1::Pelaksana* FindPelaksana(const v1::Definition& def, const std::string& id);

}  // namespace sopflow
