package nl.uva.deepspike.mlp;

/*
 * distspike's training driver for the authors' engine (petered/DeepSpike, SpikingMLP), for
 * benchmarks/anchors/anchor_rows.py: trains the engine under distspike's protocol (its initial weights, its data
 * order and split, one experiment's settings) so that a gap between distspike and the paper can be isolated.
 *
 * Set up as the paper's MNIST experiments set the engine up (docs/semantics.md): held errors, rectified herding
 * forward and at test time ("rect-herding"), float64 ("DOUBLE"), the queue implementation, no regularisation,
 * online training one sample at a time (train_one), the engine's step eta / T^2.
 *
 * Data order: distspike trains in file order, the same order every epoch (data.shuffle_seed null), so this does too.
 *
 * Arguments (key=value):
 *   data=DIR            MNIST IDX .gz files (train-images-idx3-ubyte.gz, ...)
 *   weights=FILE        initial weights (DeepSpikeDriver's format: int32 layers, then per layer int32 rows, int32
 *                       cols and rows*cols float32, big-endian)
 *   rule=sgd|fsgd       SGD (outer product at the end of a sample) or FSGD (fractional updates)
 *   smooth=0|1          smooth gradients (the engine's smooth_grads: updates from the running pre-activation sums)
 *   backward=noreset|random   the backward quantizers: "noreset-herding" (distspike backward_reset: none) or
 *                       "randreset-herding" (backward_reset: random; phi ~ U(-0.5, 0.5) at each sample)
 *   depth_first=0|1     routing (distspike routing: dfs); hold_error=1|0
 *   steps=10 eta=0.01 seed=1234 (the engine's Random: quantizer resets; only random resets draw from it)
 *   split=official|validation   official: 60k train / 10k test; validation: the first 50k training images train,
 *                       the last 10k test (mnist.pkl.gz's split)
 *   epochs=4            epochs over the whole training part
 *   n_train=0           0: the whole training part; N: only its first N samples per epoch (checks)
 *   n_test=0            0: the whole test part; N: its first N samples
 *   count=0|1           1: count spikes in epoch 1 (input, per layer, errors passed per layer), per sample
 * After every epoch prints one line: DISTSPIKE-ANCHOR {json} (epoch, test_error, train_wall_s, train_cpu_s,
 * test_wall_s, ...).
 */

import nl.uva.arrays.IVector;
import nl.uva.arrays.VectorFactory;

import java.io.*;
import java.util.*;
import java.util.zip.GZIPInputStream;

public class DeepSpikeTrainer {

    static final String MARK = "DISTSPIKE-ANCHOR ";

    /** All rows of an IDX file of unsigned bytes, kept as bytes (scaled when a sample is fed). */
    static byte[][] idxBytes(File file) throws IOException {
        try (DataInputStream in = new DataInputStream(new BufferedInputStream(
                new GZIPInputStream(new FileInputStream(file)), 1 << 16))) {
            int magic = in.readInt();
            int dims = magic & 0xff;
            if ((magic >>> 8) != 0x08 || dims < 1)
                throw new IOException(file + ": not an IDX file of unsigned bytes (magic " + magic + ")");
            int rows = in.readInt(), width = 1;
            for (int d = 1; d < dims; d++) width *= in.readInt();
            byte[][] out = new byte[rows][width];
            for (byte[] row : out) in.readFully(row);
            return out;
        }
    }

    /** A sample's pixels / 255 (distspike's ScaledRows scale). */
    static IVector image(byte[] row) {
        double[] v = new double[row.length];
        for (int j = 0; j < row.length; j++) v[j] = (row[j] & 0xff) / 255.0;
        return VectorFactory.create(v);
    }

    static IVector oneHot(int label, int classes) {
        double[] t = new double[classes];
        t[label] = 1.0;
        return VectorFactory.create(t);
    }

    static int argmax(IVector v) {
        float[] f = v.asFloat();
        int best = 0;
        for (int j = 1; j < f.length; j++) if (f[j] > f[best]) best = j;
        return best;
    }

    static String need(Map<String, String> arg, String key, String... allowed) {
        String v = arg.get(key);
        if (!Arrays.asList(allowed).contains(v))
            throw new IllegalArgumentException(key + "=" + v + ": expected one of " + Arrays.toString(allowed));
        return v;
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> arg = new HashMap<>(Map.of("rule", "sgd", "smooth", "0", "backward", "noreset",
                "depth_first", "0", "hold_error", "1", "split", "official", "count", "0"));
        for (String a : argv) {
            int eq = a.indexOf('=');
            if (eq < 1) throw new IllegalArgumentException("expected key=value, got " + a);
            arg.put(a.substring(0, eq), a.substring(eq + 1));
        }
        File data = new File(arg.getOrDefault("data", "data/mnist"));
        String rule = need(arg, "rule", "sgd", "fsgd");
        boolean smooth = need(arg, "smooth", "0", "1").equals("1");
        String backward = need(arg, "backward", "noreset", "random").equals("random") ? "randreset-herding" : "noreset-herding";
        boolean depthFirst = need(arg, "depth_first", "0", "1").equals("1");
        boolean holdError = need(arg, "hold_error", "0", "1").equals("1");
        boolean validation = need(arg, "split", "official", "validation").equals("validation");
        boolean count = need(arg, "count", "0", "1").equals("1");
        int steps = Integer.parseInt(arg.getOrDefault("steps", "10"));
        float eta = Float.parseFloat(arg.getOrDefault("eta", "0.01"));
        int seed = Integer.parseInt(arg.getOrDefault("seed", "1234"));
        int epochs = Integer.parseInt(arg.getOrDefault("epochs", "4"));
        int nTrainArg = Integer.parseInt(arg.getOrDefault("n_train", "0"));
        int nTestArg = Integer.parseInt(arg.getOrDefault("n_test", "0"));

        float[][][] ws = DeepSpikeDriver.readWeights(new File(arg.get("weights")));
        int classes = ws[ws.length - 1][0].length;
        // (ws, n_steps, eta, depth_first, fractional_updates, queue_implementation, return_counts, smooth_grads,
        //  forward, backward, test discretisation, seed, regularization, hold_error, dtype)
        SpikingMLP net = new SpikingMLP(ws, steps, eta, depthFirst, rule.equals("fsgd"), true, false, smooth,
                "rect-herding", backward, "rect-herding", seed, 0f, holdError, "DOUBLE");

        byte[][] xtr = idxBytes(new File(data, "train-images-idx3-ubyte.gz"));
        byte[][] ytr = idxBytes(new File(data, "train-labels-idx1-ubyte.gz"));
        byte[][] xte, yte;
        int trainLo = 0, trainHi, testLo;
        if (validation) {
            trainHi = xtr.length - 10000;
            xte = xtr;
            yte = ytr;
            testLo = trainHi;
        } else {
            trainHi = xtr.length;
            xte = idxBytes(new File(data, "t10k-images-idx3-ubyte.gz"));
            yte = idxBytes(new File(data, "t10k-labels-idx1-ubyte.gz"));
            testLo = 0;
        }
        if (nTrainArg > 0) trainHi = Math.min(trainHi, trainLo + nTrainArg);
        int testHi = nTestArg > 0 ? Math.min(xte.length, testLo + nTestArg) : (validation ? xtr.length : xte.length);

        for (int epoch = 1; epoch <= epochs; epoch++) {
            DeepSpikeDriver.Counters counters = count && epoch == 1 ? new DeepSpikeDriver.Counters(net) : null;
            long c0 = DeepSpikeDriver.cpuNanos(), w0 = System.nanoTime();
            for (int k = trainLo; k < trainHi; k++) net.train_one(image(xtr[k]), oneHot(ytr[k][0] & 0xff, classes));
            long c1 = DeepSpikeDriver.cpuNanos(), w1 = System.nanoTime();
            String spikes = counters != null ? ", " + counters.json(trainHi - trainLo) : "";
            int wrong = 0;
            for (int k = testLo; k < testHi; k++) if (argmax(net.predict_one(image(xte[k]))) != (yte[k][0] & 0xff)) wrong++;
            long c2 = DeepSpikeDriver.cpuNanos(), w2 = System.nanoTime();
            System.out.println(MARK + String.format(Locale.ROOT,
                    "{\"engine\": \"deepspike\", \"epoch\": %d, \"n_train\": %d, \"n_test\": %d, \"test_error\": %.6f, "
                            + "\"train_wall_s\": %.3f, \"train_cpu_s\": %.3f, \"test_wall_s\": %.3f, \"test_cpu_s\": %.3f%s}",
                    epoch, trainHi - trainLo, testHi - testLo, wrong / (double) (testHi - testLo),
                    (w1 - w0) * 1e-9, (c1 - c0) * 1e-9, (w2 - w1) * 1e-9, (c2 - c1) * 1e-9, spikes));
            System.out.flush();
        }
    }
}
