package nl.uva.deepspike.mlp;

/*
 * distspike's driver for the authors' engine (petered/DeepSpike, SpikingMLP), for benchmarks/bench_inprocess.py.
 *
 * The engine is set up the way the paper's MNIST experiments set it up: breadth-first routing, held errors,
 * rectified herding forward ("rect-herding", also at test time), non-resetting herding backward
 * ("noreset-herding"), T steps, eta (the engine's step is eta / T^2), float64 ("DOUBLE"), no smooth gradients,
 * no regularisation, the queue implementation, online training one sample at a time (train_one).
 *
 * It lives in SpikingMLP's package to reach its package-private modules for the optional spike counts.
 *
 * Arguments (key=value):
 *   data=DIR          MNIST IDX .gz files (train-images-idx3-ubyte.gz, ...)
 *   weights=FILE      initial weights from the benchmark: int32 layers, then per layer int32 rows, int32 cols and
 *                     rows*cols float32, all big-endian (what numpy's '>i4'/'>f4' write); sizes come from them
 *   rule=sgd|fsgd     SGD (outer product at the end of a sample) or FSGD (fractional updates)
 *   first=500         training samples before the timed window (warm-up: JIT, and the net leaves its quiet start)
 *   n=5000            timed training samples: first .. first+n-1 of the training set, in file order
 *   npred=2000        timed predictions: test samples 0 .. npred-1 (after 50 untimed ones)
 *   count=0|1         1: count spikes on the window (input, per layer, errors passed per layer); costs time
 *   steps=10 eta=0.01
 * Prints one line: JSON with the figures.
 */

import nl.uva.arrays.IVector;
import nl.uva.arrays.VectorFactory;
import nl.uva.deepspike.eavesdroppers.SpikeCountingEavesdropper;
import nl.uva.deepspike.event_modules.BaseQueueHerder;

import java.io.*;
import java.lang.management.ManagementFactory;
import java.util.*;

public class DeepSpikeDriver {

    /** Rows [0, limit) of an IDX file of unsigned bytes, as rows of doubles divided by `divisor` (1 for labels). */
    static double[][] idxRows(File file, int limit, double divisor) throws IOException {
        byte[][] bytes = DeepSpikeTrainer.idxBytes(file);
        double[][] out = new double[Math.min(bytes.length, limit)][];
        for (int i = 0; i < out.length; i++) {
            out[i] = new double[bytes[i].length];
            for (int j = 0; j < out[i].length; j++) out[i][j] = (bytes[i][j] & 0xff) / divisor;
        }
        return out;
    }

    static float[][][] readWeights(File file) throws IOException {
        try (DataInputStream in = new DataInputStream(new BufferedInputStream(new FileInputStream(file)))) {
            float[][][] ws = new float[in.readInt()][][];
            for (int l = 0; l < ws.length; l++) {
                ws[l] = new float[in.readInt()][in.readInt()];
                for (float[] row : ws[l]) for (int j = 0; j < row.length; j++) row[j] = in.readFloat();
            }
            return ws;
        }
    }

    /** The one-hot target of each label (the engine negates it itself). */
    static IVector[] targets(double[][] labels, int classes) {
        IVector[] out = new IVector[labels.length];
        for (int k = 0; k < labels.length; k++) {
            double[] t = new double[classes];
            t[(int) labels[k][0]] = 1.0;
            out[k] = VectorFactory.create(t);
        }
        return out;
    }

    static IVector[] vectors(double[][] rows) {
        IVector[] out = new IVector[rows.length];
        for (int k = 0; k < rows.length; k++) out[k] = VectorFactory.create(rows[k]);
        return out;
    }

    static int argmax(IVector v) {
        float[] f = v.asFloat();
        int best = 0;
        for (int j = 1; j < f.length; j++) if (f[j] > f[best]) best = j;
        return best;
    }

    /** Spike counters on the window: input herder, each layer's forward herder and backward gate. */
    static final class Counters {
        final SpikeCountingEavesdropper input = new SpikeCountingEavesdropper();
        final SpikeCountingEavesdropper[] forward, passed;

        Counters(SpikingMLP net) {
            ((BaseQueueHerder) net.input_herder).add_eavesdropper(input);
            forward = new SpikeCountingEavesdropper[net.layers.length];
            passed = new SpikeCountingEavesdropper[net.layers.length];
            for (int l = 0; l < net.layers.length; l++) {
                forward[l] = ((BaseQueueHerder) net.layers[l].forward_herder).add_eavesdropper(new SpikeCountingEavesdropper());
                passed[l] = net.layers[l].back_filter.add_eavesdropper(new SpikeCountingEavesdropper());
            }
        }

        String json(int n) {
            StringBuilder s = new StringBuilder(String.format(Locale.ROOT, "\"spikes\": [%.3f", input.get_count() / (double) n));
            for (SpikeCountingEavesdropper c : forward) s.append(String.format(Locale.ROOT, ", %.3f", c.get_count() / (double) n));
            s.append("], \"passed\": [");
            for (int l = 0; l < passed.length; l++)
                s.append(String.format(Locale.ROOT, l == 0 ? "%.3f" : ", %.3f", passed[l].get_count() / (double) n));
            return s.append("]").toString();
        }
    }

    static long cpuNanos() {
        return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> arg = new HashMap<>();
        for (String a : argv) {
            int eq = a.indexOf('=');
            if (eq < 1) throw new IllegalArgumentException("expected key=value, got " + a);
            arg.put(a.substring(0, eq), a.substring(eq + 1));
        }
        File data = new File(arg.getOrDefault("data", "data/mnist"));
        String rule = arg.getOrDefault("rule", "sgd");
        int first = Integer.parseInt(arg.getOrDefault("first", "500"));
        int n = Integer.parseInt(arg.getOrDefault("n", "5000"));
        int npred = Integer.parseInt(arg.getOrDefault("npred", "2000"));
        int steps = Integer.parseInt(arg.getOrDefault("steps", "10"));
        float eta = Float.parseFloat(arg.getOrDefault("eta", "0.01"));
        boolean count = arg.getOrDefault("count", "0").equals("1");
        if (!rule.equals("sgd") && !rule.equals("fsgd")) throw new IllegalArgumentException("rule=" + rule);

        float[][][] ws = readWeights(new File(arg.get("weights")));
        int classes = ws[ws.length - 1][0].length;
        IVector[] x = vectors(idxRows(new File(data, "train-images-idx3-ubyte.gz"), first + n, 255.0));
        IVector[] t = targets(idxRows(new File(data, "train-labels-idx1-ubyte.gz"), first + n, 1.0), classes);
        IVector[] xp = vectors(idxRows(new File(data, "t10k-images-idx3-ubyte.gz"), npred + 50, 255.0));
        double[][] yp = idxRows(new File(data, "t10k-labels-idx1-ubyte.gz"), npred + 50, 1.0);

        // (ws, n_steps, eta, depth_first, fractional_updates, queue_implementation, return_counts, smooth_grads,
        //  forward, backward, test discretisation, seed, regularization, hold_error, dtype)
        SpikingMLP net = new SpikingMLP(ws, steps, eta, false, rule.equals("fsgd"), true, false, false,
                "rect-herding", "noreset-herding", "rect-herding", 1234, 0f, true, "DOUBLE");
        for (int k = 0; k < first; k++) net.train_one(x[k], t[k]);
        Counters counters = count ? new Counters(net) : null;
        long c0 = cpuNanos(), w0 = System.nanoTime();
        for (int k = first; k < first + n; k++) net.train_one(x[k], t[k]);
        long c1 = cpuNanos(), w1 = System.nanoTime();
        String spikes = count ? ", " + counters.json(n) : "";  // read now: prediction uses the same input herder

        for (int k = 0; k < 50; k++) net.predict_one(xp[npred + k]);
        int wrong = 0;
        long pc0 = cpuNanos(), pw0 = System.nanoTime();
        for (int k = 0; k < npred; k++) if (argmax(net.predict_one(xp[k])) != (int) yp[k][0]) wrong++;
        long pc1 = cpuNanos(), pw1 = System.nanoTime();
        System.out.println(String.format(Locale.ROOT,
                "{\"engine\": \"deepspike\", \"rule\": \"%s\", \"first\": %d, \"n\": %d, \"train_cpu_s\": %.6f, "
                        + "\"train_wall_s\": %.6f, \"npred\": %d, \"pred_cpu_s\": %.6f, \"pred_wall_s\": %.6f, "
                        + "\"test_error\": %.5f%s}",
                rule, first, n, (c1 - c0) * 1e-9, (w1 - w0) * 1e-9, npred, (pc1 - pc0) * 1e-9, (pw1 - pw0) * 1e-9,
                npred == 0 ? 0.0 : wrong / (double) npred, spikes));
    }
}
