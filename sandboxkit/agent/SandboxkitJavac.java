import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * sandboxkit: a resident javac. Started by the agent ({@code java JVM-FLAGS -cp DIR
 * SandboxkitJavac ARGS...}, ARGS being the spec's javac arguments without its {@code -J}
 * ones, which are this JVM's flags) in a Java sandbox that has served no one yet, it
 * compiles a small class in a scratch directory (javac's classes get loaded and compiled
 * by the JIT, the platform's class index read), says ready on descriptor 4 and blocks
 * until the agent sends the run on descriptor 3 (one JSON object: extra arguments and
 * environment, then end of file). Then it does what the {@code javac} launcher does:
 * {@code System.exit(com.sun.tools.javac.Main.compile(args))}, with the two properties
 * the launcher sets and javac reads ({@code application.home}, so the default class path
 * is the current directory, and {@code env.class.path} from {@code CLASSPATH}). So
 * diagnostics, class files and exit status are javac's own. The environment is the
 * one it was started with: the agent hands it only runs with that very environment.
 */
public final class SandboxkitJavac {
    private SandboxkitJavac() {}

    public static void main(String[] args) throws Exception {
        System.setProperty("application.home", System.getProperty("java.home"));
        String classPath = System.getenv("CLASSPATH");
        if (classPath != null) {
            System.setProperty("env.class.path", classPath);
        }
        try {
            warmUp(args);
        } catch (Exception e) {
            // a warm-up that fails only leaves javac cold
        }
        try (OutputStream ready = new FileOutputStream("/proc/self/fd/4")) {
            ready.write('r');
        }
        ByteArrayOutputStream message = new ByteArrayOutputStream();
        try (InputStream control = new FileInputStream("/proc/self/fd/3")) {
            // a read loop: FileInputStream.readAllBytes seeks, which a pipe refuses
            byte[] buf = new byte[65536];
            for (int n; (n = control.read(buf)) > 0; ) {
                message.write(buf, 0, n);
            }
        }
        byte[] job = message.toByteArray();
        if (job.length == 0) {
            System.exit(70); // discarded: the run went another way
        }
        List<String> all = new ArrayList<>(List.of(args));
        all.addAll(jsonArgs(new String(job, StandardCharsets.UTF_8)));
        System.exit(com.sun.tools.javac.Main.compile(all.toArray(new String[0])));
    }

    private static void warmUp(String[] args) throws IOException {
        Path dir = Files.createTempDirectory("sandboxkit-javac-");
        try {
            Path source = dir.resolve("Warm.java");
            Files.writeString(
                    source,
                    String.join(
                            "\n",
                            "import java.util.*;",
                            "import java.util.stream.*;",
                            "public class Warm {",
                            "  record Point(int x, int y) { double norm() { return Math.hypot(x, y); } }",
                            "  public static void main(String[] args) throws Exception {",
                            "    List<Point> points = new ArrayList<>();",
                            "    for (int i = 0; i < 3; i++) points.add(new Point(i, i * 2));",
                            "    Map<String, Double> byName = points.stream()",
                            "        .collect(Collectors.toMap(p -> \"p\" + p.x(), Point::norm));",
                            "    java.io.BufferedReader in = new java.io.BufferedReader(",
                            "        new java.io.InputStreamReader(System.in));",
                            "    System.out.printf(\"%d %s%n\", points.size(), byName);",
                            "  }",
                            "}",
                            ""),
                    StandardCharsets.UTF_8);
            List<String> options = new ArrayList<>();
            for (int i = 0; i < args.length; i++) {
                if (args[i].endsWith(".java")) {
                    continue;
                }
                options.add(args[i]);
            }
            options.addAll(List.of("-d", dir.toString(), source.toString()));
            PrintWriter nowhere = new PrintWriter(Writer.nullWriter());
            com.sun.tools.javac.Main.compile(options.toArray(new String[0]), nowhere);
        } finally {
            try (Stream<Path> paths = Files.walk(dir)) {
                for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) {
                    Files.deleteIfExists(p);
                }
            }
        }
    }

    /** The strings of the {@code "args"} array of the agent's message (Python's JSON). */
    static List<String> jsonArgs(String json) {
        List<String> out = new ArrayList<>();
        int at = json.indexOf("\"args\"");
        if (at < 0) {
            return out;
        }
        at = json.indexOf('[', at) + 1;
        while (at > 0 && at < json.length()) {
            char c = json.charAt(at);
            if (c == ']') {
                break;
            }
            if (c != '"') {
                at++;
                continue;
            }
            StringBuilder s = new StringBuilder();
            at++;
            while (json.charAt(at) != '"') {
                char d = json.charAt(at++);
                if (d != '\\') {
                    s.append(d);
                    continue;
                }
                char e = json.charAt(at++);
                switch (e) {
                    case 'n' -> s.append('\n');
                    case 't' -> s.append('\t');
                    case 'r' -> s.append('\r');
                    case 'b' -> s.append('\b');
                    case 'f' -> s.append('\f');
                    case 'u' -> {
                        s.append((char) Integer.parseInt(json.substring(at, at + 4), 16));
                        at += 4;
                    }
                    default -> s.append(e);
                }
            }
            out.add(s.toString());
            at++;
        }
        return out;
    }
}
