;;; warren-test.el --- ERT tests of the warren package against a live daemon  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The warren authors
;; SPDX-License-Identifier: Apache-2.0

;;; Commentary:

;; These tests drive a real daemon through the real CLI.  They expect:
;;   WARREN_STATE_DIR         the daemon's state directory (the CLI finds its socket there)
;;   WARREN_EXECUTABLE        the CLI (or `warren' on PATH)
;;   WARREN_TEST_WORKLOADS    two running workloads, "FIRST SECOND": FIRST prints
;;                            "hello from FIRST", publishes host port WARREN_TEST_PORT to
;;                            its port 80, is routed as FIRST.test and is never stopped;
;;                            SECOND is stopped and started again by the tests
;; crates/warren/tests/emacs.rs sets these up and runs:
;;   emacs --batch -L emacs -l ert -l emacs/test/warren-test.el \
;;         -f ert-run-tests-batch-and-exit
;; Without them every test fails: they are never skipped.

;;; Code:

(require 'ert)
(require 'warren)
(require 'warren-list)
(require 'warren-logs)
(require 'warren-repl)
(require 'warren-org)
(require 'tramp)
(require 'term)
(require 'comint)

(defun warren-test--workloads ()
  "The two workloads the harness applied."
  (let ((names (split-string (or (getenv "WARREN_TEST_WORKLOADS") "") " " t)))
    (unless (= (length names) 2)
      (ert-fail "WARREN_TEST_WORKLOADS must name two running workloads"))
    (unless (getenv "WARREN_STATE_DIR")
      (ert-fail "WARREN_STATE_DIR must point at a live daemon"))
    names))

(defun warren-test--port ()
  "The port mapping of the first workload, as the list shows it."
  (format "%s:80/tcp" (or (getenv "WARREN_TEST_PORT")
                          (ert-fail "WARREN_TEST_PORT must be the first workload's host port"))))

(defun warren-test--label (what)
  "A snapshot label for WHAT, new on every run."
  (format "%s-%d-%d" what (emacs-pid) (random 1000000)))

(defun warren-test--wait (what pred &optional secs)
  "Process events until PRED holds; fail naming WHAT after SECS (default 30)."
  (let ((deadline (+ (float-time) (or secs 30))))
    (while (not (funcall pred))
      (when (> (float-time) deadline)
        (ert-fail (format "timed out waiting for %s" what)))
      (accept-process-output nil 0.1))))

(defun warren-test--row (buf name)
  "The columns of workload NAME in list buffer BUF, as a list of strings."
  (with-current-buffer buf
    (let ((e (assoc name tabulated-list-entries)))
      (and e (mapcar #'substring-no-properties (append (cadr e) nil))))))

(defun warren-test--state (buf name)
  "The state column of NAME in list buffer BUF."
  (nth 2 (warren-test--row buf name)))

(defun warren-test--cli-state (name)
  "NAME's state as the CLI reports it."
  (alist-get 'state (warren-json (list "get" name "-o" "json"))))

(ert-deftest warren-test-list-shows-the-applied-workloads ()
  (pcase-let* ((`(,first ,second) (warren-test--workloads))
               (buf (warren-list)))
    (unwind-protect
        (with-current-buffer buf
          (should (eq major-mode 'warren-list-mode))
          (dolist (name (list first second))
            (let ((row (warren-test--row buf name)))
              (should row)
              (should (equal (nth 0 row) name))
              (should (equal (nth 1 row) "container"))
              (should (member (nth 2 row) '("running" "starting" "stopped")))
              ;; The rendered buffer shows it too.
              (should (save-excursion
                        (goto-char (point-min))
                        (search-forward name nil t)))))
          ;; The published port and the domain come from the spec.
          (let ((row (warren-test--row buf first)))
            (should (equal (nth 5 row) (warren-test--port)))
            (should (equal (nth 6 row) (concat first ".test")))
            (should (equal (nth 2 row) "running"))
            (should (string-match-p "\\`[0-9]+[smhd]\\'" (nth 7 row)))
            (should (equal (nth 8 row) "0"))))
      (kill-buffer buf))))

(ert-deftest warren-test-list-actions-and-the-event-stream ()
  (pcase-let* ((`(,_first ,second) (warren-test--workloads))
               (buf (warren-list)))
    (unwind-protect
        (with-current-buffer buf
          ;; Visible: following the event stream.
          (should (process-live-p warren-list--stream))
          ;; Mark SECOND and stop it through the list's action.
          (goto-char (point-min))
          (warren-test--wait "the row of the second workload"
                             (lambda () (search-forward second nil t)))
          (beginning-of-line)
          (warren-list-mark)
          (should (equal warren-list--marked (list second)))
          (warren-list-stop)
          (warren-test--wait "the list to show the stopped workload"
                             (lambda () (equal (warren-test--state buf second) "stopped")))
          (should (equal (warren-test--cli-state second) "stopped"))
          ;; The mark survives the refreshes.
          (should (equal warren-list--marked (list second)))
          (warren-list-unmark-all)
          ;; A change made elsewhere shows up through the event stream alone.
          (let ((before warren-list-refresh-count))
            (warren-run (list "start" second))
            (warren-test--wait "the event stream to refresh the list"
                               (lambda () (equal (warren-test--state buf second) "running")))
            (should (> warren-list-refresh-count before)))
          ;; Hidden: the stream ends; shown again: it follows again.
          (switch-to-buffer (get-buffer-create "*warren-test-other*"))
          (warren-list--sync-visibility)
          (should-not (process-live-p warren-list--stream))
          (let ((before warren-list-refresh-count))
            (warren-run (list "restart" second))
            (accept-process-output nil 1)
            (should (= warren-list-refresh-count before)))
          (switch-to-buffer buf)
          (warren-list--sync-visibility)
          (should (process-live-p warren-list--stream)))
      (kill-buffer buf)
      (warren-test--wait "the second workload to run again"
                         (lambda () (equal (warren-test--cli-state second) "running"))))))

(ert-deftest warren-test-dynamic-block-renders-the-table ()
  (pcase-let ((`(,first ,second) (warren-test--workloads)))
    (with-temp-buffer
      (org-mode)
      (insert "* Fleet\n"
              "#+BEGIN: warren-status :match \"^emacs-\" :columns (name kind)\n#+END:\n"
              (format "#+BEGIN: warren-status :match \"^%s$\" :columns (name state ports domains)\n#+END:\n"
                      first)
              "#+BEGIN: warren-status :context no-such-context\n#+END:\n")
      (org-update-all-dblocks)
      (let ((text (buffer-string))
            (w (max (length first) (length second) 4)))
        (should (string-search
                 (concat
                  "#+BEGIN: warren-status :match \"^emacs-\" :columns (name kind)\n"
                  (format "| %s | KIND      |\n" (string-pad "NAME" w))
                  (format "|-%s-+-----------|\n" (make-string w ?-))
                  (format "| %s | container |\n" (string-pad first w))
                  (format "| %s | container |\n" (string-pad second w))
                  "#+END:\n")
                 text))
        (should (string-match-p
                 (format "^| %s +| running | %s | %s.test |$"
                         (regexp-quote first) (regexp-quote (warren-test--port))
                         (regexp-quote first))
                 text))
        (should-not (string-match-p (format "^| %s " (regexp-quote second))
                                    (nth 2 (split-string text "#\\+BEGIN: "))))
        ;; An unreachable daemon fills its own block with the error; the others still update.
        (should (string-match-p
                 "#\\+BEGIN: warren-status :context no-such-context\nerror: .*no-such-context"
                 text))
        ;; C-c C-x C-u on one block updates that block.
        (goto-char (point-min))
        (search-forward "#+BEGIN: warren-status :match \"^emacs-\" :columns")
        (beginning-of-line)
        (should (eq (key-binding (kbd "C-c C-x C-u")) 'org-dblock-update))
        (org-dblock-update)
        (should (equal (buffer-string) text))))))

(ert-deftest warren-test-snapshots-block ()
  (pcase-let ((`(,first ,_second) (warren-test--workloads))
              (label (warren-test--label "from-emacs")))
    (warren-run (list "snapshot" first "--label" label))
    (with-temp-buffer
      (org-mode)
      (insert (format "#+BEGIN: warren-snapshots :workload %s\n#+END:\n" first))
      (org-update-all-dblocks)
      (should (string-match-p "| WORKLOAD +| LABEL +| TAKEN +| SIZE +| KIND +|" (buffer-string)))
      (should (string-match-p
               (format "| %s +| %s +| [0-9]\\{4\\}-[0-9-]+ [0-9:]+ +| [^|]* | manual |"
                       (regexp-quote first) label)
               (buffer-string))))))

(ert-deftest warren-test-repl-evaluates-workloads ()
  (pcase-let* ((`(,first ,second) (warren-test--workloads))
               (history (make-temp-file "warren-repl-history"))
               (warren-repl-history-file history)
               (buf (warren-repl)))
    (unwind-protect
        (with-current-buffer buf
          (should (eq major-mode 'warren-repl-mode))
          (warren-test--wait "the REPL's prompt"
                             (lambda () (save-excursion
                                          (goto-char (point-min))
                                          (re-search-forward warren-repl-prompt-regexp nil t))))
          (goto-char (point-max))
          (insert "(workloads)")
          (comint-send-input)
          (progn
            (warren-test--wait "the value of (workloads)"
                               (lambda () (string-match-p
                                           (format "^(.*%S.*%S.*)$" first second)
                                           (buffer-string))))
            ;; A form over several lines waits for its end, then evaluates.
            (goto-char (point-max))
            (insert "(+ 40")
            (comint-send-input)
            (goto-char (point-max))
            (insert "2)")
            (comint-send-input)
            (warren-test--wait "the value of the two-line form"
                               (lambda () (string-match-p "^\\(?:   \\.\\.\\.> \\)?42$"
                                                          (buffer-string))))
            ;; Input is Scheme: font-lock knows its keywords.
            (goto-char (point-max))
            (insert "(define answer 42)")
            (font-lock-ensure)
            (should (eq (get-text-property (- (point) (length "answer 42)") 7) 'face)
                        'font-lock-keyword-face))
            (comint-send-input)
            ;; Input history.
            (should (equal (ring-ref comint-input-ring 0) "(define answer 42)"))
            (should (member "(workloads)" (ring-elements comint-input-ring)))))
      (let ((proc (get-buffer-process buf)))
        (when proc (delete-process proc)))
      (kill-buffer buf)
      (should (string-search "(workloads)"
                             (with-temp-buffer (insert-file-contents history) (buffer-string))))
      (delete-file history))))

(ert-deftest warren-test-logs-events-describe ()
  (pcase-let ((`(,first ,_second) (warren-test--workloads))
              (label (warren-test--label "for-describe")))
    (let* ((events (warren-events))
           (logs (warren-logs first))
           (describe nil))
      (unwind-protect
          (progn
            (with-current-buffer events
              (warren-test--wait "the stored events"
                                 (lambda () (> (buffer-size) 0)))
              (should (process-live-p (get-buffer-process events)))
              ;; A new event arrives while the buffer follows.
              (warren-run (list "snapshot" first "--label" label))
              (warren-test--wait "the live snapshot event"
                                 (lambda () (string-search
                                             (format " %s snapshot snapshot %s taken" first label)
                                             (buffer-string)))))
            (with-current-buffer logs
              (warren-test--wait "the workload's output"
                                 (lambda () (string-search (concat "hello from " first)
                                                           (buffer-string))))
              (should (process-live-p (get-buffer-process logs)))
              (warren-stream-toggle-follow)
              (should-not (get-buffer-process logs)))
            (setq describe (warren-describe first))
            (with-current-buffer describe
              (should (string-prefix-p (concat first "  running") (buffer-string)))
              (should (string-search "Spec and status" (buffer-string)))
              (should (string-search label (buffer-string)))))
        (dolist (b (delq nil (list logs events describe)))
          (let ((p (get-buffer-process b)))
            (when p (delete-process p)))
          (kill-buffer b))))))

(ert-deftest warren-test-over-tramp ()
  "From a TRAMP directory the CLI of that host is used (here a local shell as the host)."
  (pcase-let ((`(,first ,second) (warren-test--workloads)))
    (add-to-list 'tramp-methods
                 '("mock" (tramp-login-program "sh") (tramp-login-args (("-i")))
                   (tramp-remote-shell "/bin/sh") (tramp-remote-shell-args ("-c"))
                   (tramp-connection-timeout 10)))
    (let* ((dir (format "/mock:%s:/tmp/" (system-name)))
           (default-directory dir)
           (buf (warren-list)))
      (unwind-protect
          (progn
            (with-current-buffer buf
              (should (equal default-directory dir))
              (should (string-search (concat "@" (system-name)) (buffer-name)))
              (should (warren-test--row buf first))
              (should (warren-test--row buf second))
              (should (process-live-p warren-list--stream))
              ;; The event stream runs through TRAMP too.
              (should (process-get warren-list--stream 'remote-pid)))
            (with-temp-buffer
              (org-mode)
              (insert (format "#+BEGIN: warren-status :directory %S :match \"^%s$\" :columns (name kind)\n#+END:\n"
                              dir first))
              (org-update-all-dblocks)
              (should (string-match-p (format "^| %s | container |$" (regexp-quote first))
                                      (buffer-string)))))
        (kill-buffer buf)
        (tramp-cleanup-all-connections)))))

(ert-deftest warren-test-info ()
  "The host's `warren info', or a plain note when the CLI has no such command."
  (let* ((info (condition-case nil
                   (warren-json '("info" "-o" "json"))
                 (warren-error 'none)))
         (buf (warren-info)))
    (unwind-protect
        (with-current-buffer buf
          (if (eq info 'none)
              (should (string-prefix-p "No host information" (buffer-string)))
            (should (string-prefix-p (format "%s:" (caar info)) (buffer-string)))))
      (kill-buffer buf))))

(ert-deftest warren-test-context-argument ()
  (should (equal (warren--arguments '("list") "prod") '("--context" "prod" "list")))
  (should (equal (let ((warren-global-arguments '("--state-dir" "/s")))
                   (warren--arguments '("list") nil))
                 '("--state-dir" "/s" "list")))
  ;; A context the CLI does not know is the CLI's error, signalled as `warren-error'.
  (let ((err (should-error (warren-json '("list" "-o" "json") "no-such-context")
                           :type 'warren-error)))
    (should (string-match-p "no-such-context" (nth 2 err)))))

(provide 'warren-test)
;;; warren-test.el ends here

(defun warren-test--shell-answers (buf send)
  "Wait until the shell in BUF answers; SEND types a line into it."
  (let ((token (format "exec-%d" (random 1000000))))
    (funcall send (format "echo %s-$((6*7))\n" token))
    (warren-test--wait (format "the shell in %s to answer" (buffer-name buf))
                       (lambda ()
                         (with-current-buffer buf
                           (save-excursion
                             (goto-char (point-min))
                             (search-forward (format "%s-42" token) nil t)))))))

(ert-deftest warren-test-exec-opens-a-shell-in-the-workload ()
  (pcase-let ((`(,first ,_second) (warren-test--workloads)))
    ;; comint (what a remote directory gets): lines through a pipe to `sh -i'.
    (let* ((warren-exec-terminal 'comint)
           (buf (warren-exec first)))
      (unwind-protect
          (warren-test--shell-answers
           buf (lambda (line)
                 (with-current-buffer buf
                   (goto-char (point-max))
                   (insert (string-trim-right line))
                   (comint-send-input))))
        (let ((p (get-buffer-process buf)))
          (when p (delete-process p)))
        (kill-buffer buf)))
    ;; term (a local directory without vterm): a terminal through `exec -t'.
    (let* ((warren-exec-terminal 'term)
           (buf (warren-exec first)))
      (unwind-protect
          (warren-test--shell-answers
           buf (lambda (line)
                 (term-send-raw-string line)))
        (let ((p (get-buffer-process buf)))
          (when p (delete-process p)))
        (kill-buffer buf)))))

(ert-deftest warren-test-the-transient-menu-offers-the-actions ()
  (let ((buf (warren-list)))
    (unwind-protect
        (with-current-buffer buf
          (should (eq (lookup-key warren-list-mode-map "?") 'warren-list-dispatch))
          (should (commandp 'warren-list-dispatch))
          (pcase-dolist (`(,key . ,command)
                         '(("s" . warren-list-start) ("o" . warren-list-stop)
                           ("r" . warren-list-restart) ("D" . warren-list-delete)
                           ("l" . warren-list-logs) ("e" . warren-list-exec)
                           ("n" . warren-list-snapshot) ("b" . warren-list-rollback)))
            (let ((suffix (transient-get-suffix 'warren-list-dispatch key)))
              (should suffix)
              (should (eq (plist-get (nth 2 suffix) :command) command))
              (should (commandp command)))))
      (kill-buffer buf))))
