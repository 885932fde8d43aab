# sandboxkit: a sandbox's ruby, started before its first program exists. The agent starts
# `ruby main.rb` in a directory of its own where main.rb is this file (a link), so $0,
# __FILE__, Process.argv0 and /proc/self/cmdline are those of `ruby main.rb`, and ruby
# pays its start-up (VM, rubygems, did_you_mean, error_highlight) while the sandbox
# idles. This says ready on descriptor 4 and blocks until the agent sends the run on
# descriptor 3: NUL-separated fields (the working directory, the count of arguments,
# the arguments, then the environment as NAME=value), then end of file. It then compiles
# the program's main.rb as `ruby main.rb` would and runs it at the top level: the
# program's frames are labelled `<main>` as in a plain start, `ARGV` and `ENV` are the
# run's, and an uncaught error is printed by ruby itself (without this file's two
# frames), with ruby's exit status and signals. What stays different is documented in
# docs/fast-path.md. A program this cannot run exactly (one with `__END__`: only a
# main script gets `DATA`; one that does not compile: the message is ruby's own) is
# handed to the real `ruby main.rb` by exec, before any of it runs.
IO.for_fd(4).then { |ready| ready.write("r"); ready.close }
orders = IO.for_fd(3).then { |control| control.read.tap { control.close } }
exit!(70) if orders.empty? # discarded: the run went another way
fields = orders.split("\0", -1)
Dir.chdir(fields.shift)
args = fields.shift(fields.shift.to_i)
ENV.replace(fields.to_h { |pair| pair.split("=", 2) })
ARGV.replace(args)
source = File.binread($0) rescue nil
exec(["ruby", "ruby"], $0, *args) if source.nil? || source.match?(/^__END__\r?$/)
begin
  program = RubyVM::InstructionSequence.compile_file($0)
rescue ScriptError
  exec(["ruby", "ruby"], $0, *args)
end
# this file's frames under the program's, as a backtrace shows them (see the last line)
ours = ["#{__FILE__}:#{__LINE__ + 10}:in `eval'", "#{__FILE__}:#{__LINE__ + 10}:in `<main>'"]
# registered before the program's own at_exit blocks, so it runs after them, just
# before ruby prints an uncaught error: that error's backtrace ends at the program
at_exit do
  error = $!
  if error && !error.is_a?(SystemExit) && (trace = error.backtrace) && trace.last(2) == ours
    error.set_backtrace(trace[0...-2])
  end
end
source = fields = args = orders = nil
program.eval
