// `komoku mappings test TOPIC PAYLOAD [-c CONFIG]`: which rule a message
// matches and the changes it would make, without storing anything.
#pragma once

namespace CLI {
class App;
}

namespace komoku::app {

// Registers the `mappings` subcommand tree on `parent`; the exit status of a
// run goes to *exit_code (which must outlive parent): 0 when a rule mapped
// the message, 1 when it was refused or no rule matched, 2 for a bad config.
void AddMappingsCommand(CLI::App& parent, int* exit_code);

}  // namespace komoku::app
