// sopflow-archiver: one archiver replica. Flags or SOPFLOW_* environment.
#include "archiver.h"
#include "service_main.h"

int main(int argc, char** argv) {
  sopflow::archiver::Config c;
  std::string log_level = "info";
  CLI::App app{"sopflow archiver: tamper-evident records with classification and retention"};
  sopflow::AddCommonOptions(app, c, log_level);
  sopflow::AddConsumerOptions(app, c);
  app.add_option("--blobs", c.blob_dir, "blob store folder")->envname("SOPFLOW_BLOBS")->capture_default_str();
  app.add_option("--rules", c.rules_dir, "klasifikasi.yaml, jra.yaml, berkas.yaml")
      ->envname("SOPFLOW_ARCHIVE_RULES")->capture_default_str();
  app.add_option("--router", c.router)->envname("SOPFLOW_ROUTER")->required();
  app.add_option("--aggregator", c.aggregator)->envname("SOPFLOW_AGGREGATOR");
  app.add_option("--service-token", c.service_token, "token with read_runs")->envname("SOPFLOW_SERVICE_TOKEN")->required();
  CLI11_PARSE(app, argc, argv);
  return sopflow::ServeUntilSignal<sopflow::archiver::ArchiverProcess>("archiver", c, log_level);
}
